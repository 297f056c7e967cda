"""The papermill engine "ipc": the kernel listens on Unix sockets in a private folder."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import nbformat
import pytest

from lib.papermill_engine import IPC_PATH_MAX, ipc_socket_folder
from lib.paths import REPO_ROOT

CONNECTION = """\
import json, os
from ipykernel.connect import get_connection_file
info = json.load(open(get_connection_file()))
sockets = sorted(os.listdir(os.path.dirname(info["ip"])))
print(json.dumps({"transport": info["transport"], "ip": info["ip"], "sockets": sockets}))
"""


def test_socket_folder_is_private_and_short(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    folder = ipc_socket_folder()
    assert os.path.dirname(folder) == str(tmp_path)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    deep = tmp_path / ("d" * 90)
    deep.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(deep))
    fallback = ipc_socket_folder()  # a socket path there would pass the Unix limit
    assert os.path.dirname(fallback) == "/tmp"
    assert len(os.path.join(fallback, "kernel-10")) <= IPC_PATH_MAX
    os.rmdir(fallback)


@pytest.mark.slow
def test_notebook_runs_on_unix_sockets_without_the_tcp_warning(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(CONNECTION)]
    nbformat.write(notebook, tmp_path / "in.ipynb")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "lib.papermill_engine", str(tmp_path / "in.ipynb"),
         str(tmp_path / "out.ipynb"), "--engine", "ipc", "--kernel", "python3",
         "--no-progress-bar"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "TMPDIR": str(scratch), "JUPYTER_RUNTIME_DIR": str(scratch)})
    assert done.returncode == 0, done.stderr
    assert "without encryption" not in done.stderr
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    seen = json.loads(executed.cells[0].outputs[0]["text"])
    assert seen["transport"] == "ipc"
    assert seen["ip"].startswith(str(scratch) + os.sep)
    assert any(name.startswith("kernel-") for name in seen["sockets"])  # the kernel's sockets
    assert not any(p.name.startswith("kernel-") and p.is_dir() for p in scratch.iterdir())

"""The papermill engine "ipc": the kernel listens on Unix sockets in a private folder."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import nbformat
import pytest

from lib.core.paths import REPO_ROOT
from lib.runs.engine import IPC_PATH_MAX, QUIET_BARS, IPCEngine, ipc_socket_folder

CONNECTION = """\
import json, os
from ipykernel.connect import get_connection_file
info = json.load(open(get_connection_file()))
sockets = sorted(os.listdir(os.path.dirname(info["ip"])))
print(json.dumps({"transport": info["transport"], "ip": info["ip"], "sockets": sockets}))
"""
BAR = """\
from tqdm import tqdm
total = sum(tqdm(range(3), desc="bar"))
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


def test_kernel_starts_with_quiet_bars_and_the_environment_is_restored(monkeypatch):
    seen = {}

    class Engine:
        @staticmethod
        def execute_notebook(nb, kernel_name, **kwargs):
            seen["during"] = os.environ.get(QUIET_BARS[0])
            return nb

    monkeypatch.setattr(IPCEngine, "_nbclient", staticmethod(lambda: Engine))
    monkeypatch.delenv(QUIET_BARS[0], raising=False)
    IPCEngine.execute_notebook("nb", "python3")
    assert seen["during"] == QUIET_BARS[1]
    assert QUIET_BARS[0] not in os.environ  # as it was before
    monkeypatch.setenv(QUIET_BARS[0], "0")
    IPCEngine.execute_notebook("nb", "python3")
    assert os.environ[QUIET_BARS[0]] == "0"


@pytest.mark.slow
def test_notebook_runs_on_unix_sockets_without_the_tcp_warning(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(CONNECTION), nbformat.v4.new_code_cell(BAR)]
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
    assert executed.cells[1].outputs == []  # no progress bar saved as stderr outputs

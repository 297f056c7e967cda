"""The Makefile re-runs a notebook when a lib file it uses changes, and only then."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lib.core.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
from notebook_deps import imported_modules, lib_dependencies  # noqa: E402


def test_imports_are_followed_through_lib_modules():
    needed = {p.relative_to(REPO_ROOT).as_posix()
              for p in lib_dependencies("from lib.reports import plots")}
    # plots imports images, which imports dataset: both are needed by whoever imports plots
    assert {"lib/__init__.py", "lib/reports/__init__.py", "lib/reports/plots.py",
            "lib/data/images.py", "lib/data/dataset.py"} <= needed
    assert "lib/explain/explainer.py" not in needed
    assert "lib/synthetic/truth.py" in {
        p.relative_to(REPO_ROOT).as_posix()
        for p in lib_dependencies("from lib.synthetic import read_truth")}


def test_relative_imports_resolve_against_the_package():
    assert "lib.synthetic.folder" in imported_modules("from .folder import x", "lib.synthetic")
    assert "lib.synthetic.folder" in imported_modules("from . import folder", "lib.synthetic")
    assert "lib.x" in imported_modules("def f():\n    import lib.x\n")  # inside a function


def make_dry_run(tmp_path, changed: str) -> set[str]:
    """The notebooks that `make -n` of the executed 01 and 02 would execute, as if ``changed``
    had just been edited (-W; nothing is touched)."""
    reports = tmp_path / "reports"
    done = subprocess.run(
        ["make", "-n", "-W", changed, f"DATA_DIR={tmp_path / 'data'}", f"REPORTS={reports}",
         f"{reports}/notebooks/01_eda.ipynb", f"{reports}/notebooks/02_preprocess.ipynb"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return {word.split("/")[-1] for line in done.stdout.splitlines() if "papermill" in line
            for word in line.split() if word.startswith("notebooks/")}


@pytest.fixture
def executed_notebooks(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "metadata.csv").write_text("sample_id\n")
    (tmp_path / "reports" / "notebooks").mkdir(parents=True)
    for name in ("01_eda", "02_preprocess"):  # newer than every file they depend on
        (tmp_path / "reports" / "notebooks" / f"{name}.ipynb").write_text("{}")
    return tmp_path


def test_an_edit_reruns_only_the_notebooks_that_use_the_file(executed_notebooks):
    assert make_dry_run(executed_notebooks, "lib/explain/explainer.py") == set()
    # 02 makes the folds, 01 does not
    assert make_dry_run(executed_notebooks, "lib/data/folds.py") == {"02_preprocess.ipynb"}
    assert make_dry_run(executed_notebooks, "lib/data/images.py") == {"01_eda.ipynb",
                                                                 "02_preprocess.ipynb"}


def test_setup_names_a_full_disk_before_installing(tmp_path):
    venv = tmp_path / "venv"
    done = subprocess.run(["make", "setup", f"VENV={venv}", "SETUP_GIB=100000"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"on the disk of {tmp_path}" in done.stderr and "needs about 100000 GiB" in done.stderr
    assert not venv.exists()  # nothing half-installed


@pytest.mark.parametrize("gib", ["abc", "-1", "nan", "inf"])
def test_a_setup_gib_that_is_no_amount_is_refused_naming_it(tmp_path, gib):
    venv = tmp_path / "venv"
    done = subprocess.run(["make", "setup", f"VENV={venv}", f"SETUP_GIB={gib}"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"error: SETUP_GIB={gib}: give the GiB the environment needs as a number >= 0" \
        in done.stderr and "Traceback" not in done.stderr
    assert not venv.exists()


def test_setup_remakes_a_venv_left_without_pip_by_an_interruption(tmp_path):
    """A setup interrupted after the venv's python existed used to fail on every later run
    with "No module named pip". No index: the venv is made again, then pip stops offline."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    assert subprocess.run([venv / "bin" / "python", "-m", "pip", "--version"],
                          capture_output=True).returncode != 0
    done = subprocess.run(["make", "setup", f"VENV={venv}", "SETUP_GIB=0"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PIP_NO_INDEX": "1"})
    assert f"note: {venv} cannot run pip (an interrupted setup?): making it again" in done.stdout
    assert "No module named pip" not in done.stderr
    assert subprocess.run([venv / "bin" / "python", "-m", "pip", "--version"],
                          capture_output=True).returncode == 0
    assert done.returncode != 0 and not (venv / ".installed").exists()  # offline: no torch


def test_setup_names_a_venv_folder_that_is_no_venv(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "keep.txt").write_text("mine")
    done = subprocess.run(["make", "setup", f"VENV={venv}"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"error: {venv} exists but is no virtual environment" in done.stderr
    assert f"rm -rf {venv}" in done.stderr and (venv / "keep.txt").exists()


@pytest.mark.parametrize("user_id, allowed", [("0", True), ("1000", False)])
def test_lab_allows_root_only_for_root(tmp_path, user_id, allowed):
    done = subprocess.run(["make", "-n", "lab", f"VENV={tmp_path / 'venv'}",
                           f"USER_ID={user_id}"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60)
    lab = [line for line in done.stdout.splitlines() if "jupyter lab" in line]
    assert done.returncode == 0 and len(lab) == 1, done.stdout + done.stderr
    assert ("--allow-root" in lab[0]) == allowed

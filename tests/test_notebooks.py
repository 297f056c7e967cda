"""The notebooks, executed headless through papermill on tiny synthetic data (smoke tests that
check what each notebook leaves behind)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import nbformat
import numpy as np
import pandas as pd
import papermill as pm
import pytest

from lib.core.paths import REPO_ROOT
from lib.data.dataset import load_competition
from lib.runs.plans import notebook_parameters
from lib.runs.run_folder import data_fingerprint, is_done, read_logits, read_metrics
from lib.synthetic import generate

NOTEBOOKS = REPO_ROOT / "notebooks"
TINY_RUN = dict(backbone="test_efficientnet", m_bins=64, t_bins=96, tta_offsets=[-32, 0, 32],
                epochs=2, batch_size=4, lr=1e-3, device="cpu")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("notebooks")
    data_dir = generate(root / "data", profile="tiny", seed=0)
    return dict(root=root, data_dir=str(data_dir), cache_dir=str(root / "cache"))


def execute(name: str, out, **parameters):
    pm.execute_notebook(str(NOTEBOOKS / name), str(out), parameters=parameters,
                        kernel_name="python3", progress_bar=False)
    return nbformat.read(out, as_version=4)


def test_notebooks_have_no_outputs():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        assert not any(c.get("outputs") or c.get("execution_count") for c in cells
                       if c.cell_type == "code"), f"{path.name} is committed with outputs"
        assert any("parameters" in c.metadata.get("tags", []) for c in cells), path.name


def bound_names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """(names an import binds, names an assignment, loop, def or with binds) in ``tree``."""
    imported, assigned = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imported |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            assigned.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            assigned.add(node.name)
    return imported, assigned


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_never_rebinds_an_imported_name(path):
    """A module imported by name (``from lib.ensemble import selection``) and later assigned
    (``selection = selection.select(...)``) breaks every cell after the assignment."""
    cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    code = "\n".join(line for cell in cells for line in cell.splitlines()
                     if not line.lstrip().startswith(("%", "!")))
    imported, assigned = bound_names(ast.parse(code, filename=path.name))
    rebound = sorted(imported & assigned)
    assert not rebound, f"{path.name} rebinds imported names {rebound}"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_papermill_reads_every_parameter(path, caplog):
    """papermill (--help-notebook, the run-folder handler) sees each name the parameters cell
    assigns: a line it cannot parse (two "=", e.g. ">=" in a comment) is dropped with a
    warning."""
    with caplog.at_level("WARNING", logger="papermill"):
        seen = set(pm.inspect_notebook(str(path)))
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    assert seen == set(notebook_parameters(path.name))


@pytest.mark.slow
def test_eda_and_preprocess(workspace):
    root = workspace["root"]
    eda = execute("01_eda.ipynb", root / "01.ipynb", data_dir=workspace["data_dir"],
                  run_length_samples=5)
    figures = sum("image/png" in o.get("data", {}) for c in eda.cells for o in c.get("outputs", []))
    assert figures >= 8
    execute("02_preprocess.ipynb", root / "02.ipynb", data_dir=workspace["data_dir"],
            cache_dir=workspace["cache_dir"], image_sizes=[[64, 96]], workers=1)
    work = root / "cache" / "data"
    folds = pd.read_csv(work / "folds_n5_seed42.csv")
    assert len(folds) == 24 and set(folds["fold"]) == {0, 1, 2, 3, 4}
    assert (work / "images_m64_t96.npz").is_file()


@pytest.fixture(scope="module")
def trained_run(workspace):
    """The papermill command of README.md and docs/training.md with params/demo.yaml, shrunk to
    tiny data and a tiny backbone (a run folder under runs/ that papermill must create). It
    runs in the test's folder with --inject-output-path, so the run folder is the executed
    notebook's, in the test's runs/ and not the repository's."""
    root, name = workspace["root"], "pytest"
    relative = f"runs/{name}/test_efficientnet/fold1_seed3/03_train.ipynb"
    command = [sys.executable, "-m", "papermill", str(NOTEBOOKS / "03_train.ipynb"), relative,
               "-f", str(REPO_ROOT / "params/demo.yaml"), "-p", "name", name, "-p", "fold", "1",
               "-p", "seed", "3", "-p", "data_dir", workspace["data_dir"],
               "-p", "cache_dir", workspace["cache_dir"], "-y", json.dumps(TINY_RUN),
               "--kernel", "python3", "--no-progress-bar", "--inject-output-path"]
    subprocess.run(command, cwd=root, check=True, capture_output=True)
    return root / relative


@pytest.mark.slow
def test_train_notebook_leaves_a_finished_run_folder(trained_run, workspace):
    run_dir = trained_run.parent
    assert is_done(run_dir)
    assert {p.name for p in run_dir.iterdir()} >= {
        "03_train.ipynb", "checkpoint.pt", "oof_logits.csv", "test_logits.csv", "metrics.json",
        "learning_curve.png", "DONE"}
    metrics = read_metrics(run_dir)
    assert metrics["parameters"]["fold"] == 1 and metrics["parameters"]["seed"] == 3
    assert metrics["precision"] == "fp32"
    assert metrics["data_fingerprint"] == data_fingerprint(load_competition(workspace["data_dir"]))
    last = nbformat.read(trained_run, as_version=4).cells[-1].outputs[0]["text"]
    assert f"Executed notebook: {trained_run}" in last
    assert len(metrics["history"]) == 2 and metrics["best_epoch"] in (1, 2)
    assert metrics["last_oof_loss"] == metrics["history"][-1]["oof_loss"]
    assert metrics["kept_epoch"] == metrics["best_epoch"]
    assert metrics["parameters"]["select_epoch"] == "best"
    assert metrics["environment"]["torch"]
    oof, test = read_logits(run_dir / "oof_logits.csv"), read_logits(run_dir / "test_logits.csv")
    folds = pd.read_csv(f"{workspace['cache_dir']}/data/folds_n5_seed42.csv")
    assert sorted(oof.index) == sorted(folds.loc[folds["fold"] == 1, "sample_id"])
    assert len(test) == 12 and np.isfinite(test.to_numpy()).all()
    last = read_logits(run_dir / "oof_logits_last.csv")
    assert sorted(last.index) == sorted(oof.index) and np.isfinite(last.to_numpy()).all()


@pytest.mark.slow
def test_predict_notebook_reproduces_the_run(trained_run, workspace):
    run_dir = trained_run.parent
    out_csv = workspace["root"] / "predictions.csv"
    execute("04_predict.ipynb", workspace["root"] / "04.ipynb",
            runs_glob=str(run_dir), data_dir=workspace["data_dir"],
            cache_dir=workspace["cache_dir"], output_csv=str(out_csv), device="cpu")
    predicted = pd.read_csv(out_csv).set_index("sample_id")
    logits = read_logits(run_dir / "test_logits.csv").loc[predicted.index]
    np.testing.assert_allclose(predicted.to_numpy(), 1 / (1 + np.exp(-logits.to_numpy())),
                               atol=1e-5)


@pytest.mark.slow
def test_bare_papermill_command_keeps_the_run_and_a_copy(workspace):
    """The design card's form without an output path: papermill prints the notebook to stdout;
    the run folder still gets everything, and lib's stdout handler keeps the notebook there.
    The run folder is given (run_dir), so the test writes nothing into the repository's runs/;
    where it would go without one is lib.runs.default_run_dir's (tests/test_runs.py)."""
    run_dir = workspace["root"] / "bare" / "fold0_seed0"
    command = [sys.executable, "-m", "papermill", "notebooks/03_train.ipynb", "-f",
               "params/demo.yaml", "-p", "run_dir", str(run_dir),
               "-p", "data_dir", workspace["data_dir"], "-p", "cache_dir", workspace["cache_dir"],
               "-y", json.dumps({**TINY_RUN, "epochs": 1}), "--kernel", "python3"]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = nbformat.reads(done.stdout, as_version=4)
    assert is_done(run_dir) and (run_dir / "oof_logits.csv").is_file()
    kept = nbformat.read(run_dir / "03_train.ipynb", as_version=4)
    assert kept == printed
    last = printed.cells[-1].outputs[0]["text"]
    assert f"Run folder: {run_dir}" in last and "NOT being written to the run folder" in last
    assert f"papermill notebooks/03_train.ipynb {run_dir / '03_train.ipynb'}" in last


@pytest.mark.slow
def test_train_notebook_refuses_a_fold_that_does_not_exist(workspace, tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(pm.PapermillExecutionError, match=r"fold 5 does not exist: with "
                       r"n_folds=5 the folds are 0..4"):
        execute("03_train.ipynb", tmp_path / "run" / "03_train.ipynb", fold=5,
                run_dir=str(tmp_path / "run"), data_dir=workspace["data_dir"],
                cache_dir=workspace["cache_dir"], **TINY_RUN)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["03_train.ipynb"]

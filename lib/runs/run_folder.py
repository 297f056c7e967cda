"""Run folders: where a run's artifacts go, how they are written and read back.

A run folder (runs/<name>/<backbone>/fold<k>_seed<s>/) holds the executed 03_train.ipynb,
``checkpoint.pt``, ``oof_logits.csv`` and ``test_logits.csv`` (sample_id + 9 label columns of
logits; the OOF of the kept epoch), ``oof_logits_last.csv`` (CNN runs: the OOF logits of the
last epoch), ``metrics.json``, ``learning_curve.png`` and, written last, ``DONE``. Every file is
written atomically, so a crash leaves no DONE and no file that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from lib.core.files import atomic_write_csv, atomic_write_text
from lib.core.paths import REPO_ROOT, project_path
from lib.core.schema import LABELS

DONE = "DONE"


FAILED = "FAILED"  # written by the sweep when the notebook failed: "<run>\n<error>\n\n<log tail>"


CHECKPOINT = "checkpoint.pt"  # the model file of a CNN run (lib.train.checkpoint)
FEATURE_MODEL = "feature_model.json"  # the model file of a feature run (lib.models.model_file)


OOF_LOGITS = "oof_logits.csv"


TEST_LOGITS = "test_logits.csv"


OOF_LOGITS_LAST = "oof_logits_last.csv"  # the last epoch's OOF logits (CNN runs)


METRICS = "metrics.json"


FOLD_DIR = re.compile(r"^fold(\d+)_seed(\d+)$")


class RunFinishedError(RuntimeError):
    """The run folder already holds a finished run; it is never overwritten."""


def default_run_dir(name: str, backbone: str, fold: int, seed: int, runs_dir: str = "runs"
                    ) -> Path:
    """runs/<name>/<backbone>/fold<k>_seed<s> (relative paths from the repo root); the
    backbone's weight tag is left out (hrnet_w64.ms_in1k -> hrnet_w64)."""
    return project_path(runs_dir) / name / backbone.split(".")[0] / f"fold{fold}_seed{seed}"


def resolve_run_dir(run_dir: str, notebook_path: str | None, name: str, backbone: str,
                    fold: int, seed: int) -> Path:
    """The run folder: ``run_dir`` if given; else the folder of the executed notebook when
    papermill injected its path (``--inject-output-path``); else default_run_dir."""
    if run_dir:
        return project_path(run_dir)
    if notebook_path and notebook_path != "-":  # "-": papermill prints it to stdout
        return Path(notebook_path).resolve().parent
    return default_run_dir(name, backbone, fold, seed)


def start_run(run_dir: Path) -> Path:
    """Create the folder; refuse a finished run; drop leftovers of an interrupted one."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / DONE).exists():
        raise RunFinishedError(f"{run_dir} holds a finished run (DONE exists); delete the "
                               f"folder to train it again, or pass another run_dir")
    for leftover in (CHECKPOINT, "feature_model.json", OOF_LOGITS, TEST_LOGITS, OOF_LOGITS_LAST,
                     METRICS, "learning_curve.png"):
        (run_dir / leftover).unlink(missing_ok=True)
    for partial in run_dir.glob(".*.partial"):  # temporary files of a killed atomic write
        partial.unlink(missing_ok=True)
    return run_dir


def data_fingerprint(data) -> str:
    """A hash of what a run learns from and is scored on (a lib.data.dataset.Competition): sample
    ids, splits, derivatized flags and labels. Not the folder's path, which differs between
    the machines of a cluster; equal data in another place gives the same fingerprint."""
    meta = data.metadata.sort_values("sample_id")
    labels = data.labels.sort_index()
    payload = json.dumps([meta["sample_id"].tolist(), meta["split"].tolist(),
                          meta["derivatized"].astype(int).tolist(), labels.index.tolist(),
                          labels.to_numpy(dtype=int).tolist()])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def closing_note(run_dir: Path, notebook_name: str, started: float) -> str:
    """The last words of a training notebook: where the run's artifacts are, and whether this
    execution's notebook is being kept beside them (papermill rewrote
    ``run_dir/notebook_name`` after ``started``, a time.time()) or goes elsewhere."""
    run_dir = Path(run_dir)
    files = ", ".join(sorted(p.name for p in run_dir.iterdir() if not p.name.startswith(".")))
    lines = [f"Run folder: {run_dir}", f"Artifacts: {files}"]
    executed = run_dir / notebook_name
    if executed.is_file() and executed.stat().st_mtime >= started - 1:
        lines.append(f"Executed notebook: {executed}")
    else:
        lines += [
            "This execution's notebook is NOT being written to the run folder: papermill was",
            "given another output path, or none (it then prints the notebook to standard",
            f"output, and lib's stdout handler saves a copy to {executed} once it ends).",
            "To write it there yourself, give it as papermill's output path:",
            f"  papermill notebooks/{notebook_name} {executed} -f <params file> -p ...",
        ]
    return "\n".join(lines)


def label_frame(sample_ids, values: np.ndarray) -> pd.DataFrame:
    """(n,) ids + (n, 9) per-label values (logits, probabilities) -> DataFrame sample_id +
    the 9 label columns."""
    frame = pd.DataFrame(np.asarray(values, dtype=np.float32), columns=list(LABELS))
    frame.insert(0, "sample_id", list(sample_ids))
    return frame


def write_predictions(run_dir: Path, oof: pd.DataFrame, test: pd.DataFrame,
                      oof_last: pd.DataFrame | None = None) -> None:
    """The run's OOF and test logits (see label_frame); ``oof_last``: the last epoch's OOF
    logits, for runs with epochs."""
    atomic_write_csv(oof, run_dir / OOF_LOGITS, float_format="%.6f")
    atomic_write_csv(test, run_dir / TEST_LOGITS, float_format="%.6f")
    if oof_last is not None:
        atomic_write_csv(oof_last, run_dir / OOF_LOGITS_LAST, float_format="%.6f")


def write_metrics(run_dir: Path, metrics: dict) -> None:
    """metrics.json, with the environment (library versions, git commit) added."""
    metrics = {**metrics, "environment": environment_info()}
    atomic_write_text(run_dir / METRICS, json.dumps(metrics, indent=2, default=_jsonable))


def read_logits(path: Path) -> pd.DataFrame:
    """A logits CSV written by write_predictions -> DataFrame indexed by sample_id."""
    frame = pd.read_csv(path, dtype={"sample_id": str}).set_index("sample_id")
    if list(frame.columns) != list(LABELS):
        raise ValueError(f"{path}: expected columns sample_id + {list(LABELS)}")
    return frame


def read_metrics(run_dir: Path) -> dict:
    """A run's metrics.json."""
    return json.loads((Path(run_dir) / METRICS).read_text())


def mark_done(run_dir: Path) -> None:
    """Write DONE: the only proof that the run finished. Call it last."""
    atomic_write_text(run_dir / DONE, "")


def model_key(run_dir: Path) -> str:
    """The model a fold belongs to: runs/<name>/<backbone>/fold<k>_seed<s> -> <name>/<backbone>/
    seed<s>; the folds of one model share it."""
    run_dir = Path(run_dir)
    match = FOLD_DIR.search(run_dir.name)
    seed = f"seed{match.group(2)}" if match else run_dir.name
    return f"{run_dir.parent.parent.name}/{run_dir.parent.name}/{seed}"


def is_done(run_dir: Path) -> bool:
    return (Path(run_dir) / DONE).is_file()


def notebook_finished(path: Path) -> bool:
    """Whether a papermill-executed notebook was saved after its last cell: papermill marks
    the notebook's end time and every cell "completed" only then. A notebook killed after the
    cell that wrote DONE (its last cells "running" or "pending") is not finished; an
    unreadable one neither."""
    try:
        notebook = json.loads(Path(path).read_text())
        ended = notebook["metadata"]["papermill"].get("end_time")
        statuses = [cell["metadata"]["papermill"]["status"] for cell in notebook["cells"]]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(ended) and all(status == "completed" for status in statuses)


def environment_info() -> dict:
    """Versions and the git commit, for reproducibility records."""
    import timm
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"python": platform.python_version(), "torch": torch.__version__,
            "timm": timm.__version__, "numpy": np.__version__, "pandas": pd.__version__,
            "git_commit": commit,
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (Path, np.ndarray)):
        return str(value) if isinstance(value, Path) else value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")

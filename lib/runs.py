"""Run folders: where a run's artifacts go, how they are written and read back.

A run folder (runs/<name>/<backbone>/fold<k>_seed<s>/) holds the executed 03_train.ipynb,
``checkpoint.pt``, ``oof_logits.csv`` and ``test_logits.csv`` (sample_id + 9 label columns of
logits), ``metrics.json``, ``learning_curve.png`` and, written last, ``DONE``. Every file is
written atomically, so a crash leaves no DONE and no file that looks finished.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lib.files import atomic_write_csv, atomic_write_text
from lib.paths import REPO_ROOT, project_path
from lib.schema import LABELS

DONE = "DONE"
CHECKPOINT = "checkpoint.pt"
OOF_LOGITS = "oof_logits.csv"
TEST_LOGITS = "test_logits.csv"
METRICS = "metrics.json"


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
    if notebook_path:
        return Path(notebook_path).resolve().parent
    return default_run_dir(name, backbone, fold, seed)


def start_run(run_dir: Path) -> Path:
    """Create the folder; refuse a finished run; drop leftovers of an interrupted one."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / DONE).exists():
        raise RunFinishedError(f"{run_dir} holds a finished run (DONE exists); delete the "
                               f"folder to train it again, or pass another run_dir")
    for leftover in (CHECKPOINT, OOF_LOGITS, TEST_LOGITS, METRICS, "learning_curve.png"):
        (run_dir / leftover).unlink(missing_ok=True)
    return run_dir


def label_frame(sample_ids, values: np.ndarray) -> pd.DataFrame:
    """(n,) ids + (n, 9) per-label values (logits, probabilities) -> DataFrame sample_id +
    the 9 label columns."""
    frame = pd.DataFrame(np.asarray(values, dtype=np.float32), columns=list(LABELS))
    frame.insert(0, "sample_id", list(sample_ids))
    return frame


def save_checkpoint(path: Path, state_dict: dict, config: dict) -> None:
    """torch.save({"model": state_dict, "config": config}) atomically; loadable with
    weights_only=True (config holds only str, int, float, bool and lists of them)."""
    partial = path.with_name(f".{path.name}.partial")
    torch.save({"model": state_dict, "config": config}, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path) -> tuple[dict, dict]:
    """(state_dict, config) of a checkpoint written by save_checkpoint."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return payload["model"], payload["config"]


def write_predictions(run_dir: Path, oof: pd.DataFrame, test: pd.DataFrame) -> None:
    """The run's OOF and test logits (see label_frame)."""
    atomic_write_csv(oof, run_dir / OOF_LOGITS, float_format="%.6f")
    atomic_write_csv(test, run_dir / TEST_LOGITS, float_format="%.6f")


def write_metrics(run_dir: Path, metrics: dict) -> None:
    """metrics.json, with the environment (library versions, git commit) added."""
    metrics = {**metrics, "environment": environment_info()}
    atomic_write_text(run_dir / METRICS, json.dumps(metrics, indent=2, default=_jsonable))


def mark_done(run_dir: Path) -> None:
    """Write DONE: the only proof that the run finished. Call it last."""
    atomic_write_text(run_dir / DONE, "")


def is_done(run_dir: Path) -> bool:
    return (Path(run_dir) / DONE).is_file()


def environment_info() -> dict:
    """Versions and the git commit, for reproducibility records."""
    import timm

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

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lib.ensemble import sigmoid
from lib.files import atomic_path, atomic_write_csv, atomic_write_text
from lib.paths import REPO_ROOT, project_path
from lib.schema import LABELS

DONE = "DONE"
CHECKPOINT = "checkpoint.pt"
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
    """A hash of what a run learns from and is scored on (a lib.dataset.Competition): sample
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


def save_checkpoint(path: Path, state_dict: dict, config: dict) -> None:
    """torch.save({"model": state_dict, "config": config}) atomically; loadable with
    weights_only=True (config holds only str, int, float, bool and lists of them)."""
    import torch  # imported where needed: sweeps and their workers read run folders without it

    with atomic_path(path) as partial:
        torch.save({"model": state_dict, "config": config}, partial)


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read; the message names the file."""


def load_checkpoint(path: Path, *, mmap: bool = False) -> tuple[dict, dict]:
    """(state_dict, config) of a checkpoint written by save_checkpoint; CheckpointError naming
    the file if it is missing, truncated or not one of ours. ``mmap``: the tensors are mapped,
    not read (a cheap check that the file loads)."""
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        return payload["model"], payload["config"]
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        reason = str(error).split("\n")[0].strip() or type(error).__name__
        if isinstance(error, KeyError) or "weights only" in reason.lower().replace("_", " "):
            reason = "not a checkpoint written by this project's 03_train"
        raise CheckpointError(f"{path}: cannot load the checkpoint ({reason}); the file is "
                              f"damaged or from elsewhere: train the run again") from None


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


@dataclass
class CollectedModels:
    """Finished models ready for the ensemble.

    names: (R,) model keys (<name>/<backbone>/seed<s>), sorted; oof_probs: (R, n_train, 9)
    OOF probabilities in ``train_ids`` order; test_probs: (R, n_test, 9) mean over folds of the
    test probabilities in ``test_ids`` order; problems: one line per model left out and why;
    oof_last_probs: (R, n_train, 9) the last epoch's OOF probabilities (OOF_LOGITS_LAST), NaN
    for a model whose folds lack them (feature models, runs made before they existed).
    """

    names: list[str]
    oof_probs: np.ndarray
    test_probs: np.ndarray
    problems: list[str]
    oof_last_probs: np.ndarray


def collect_models(run_dirs: list[Path], folds: pd.DataFrame, test_ids: list[str],
                   fingerprint: str | None = None) -> CollectedModels:
    """Group finished run folders into models (all folds of one name/backbone/seed) and
    assemble each model's predictions by sample_id.

    folds: sample_id, fold of every train sample (the OOF predictions must cover each fold
    exactly); test_ids: the val + test ids every run must predict; fingerprint: the
    data_fingerprint of the data being ensembled (every fold must have seen that data). A model
    with a missing, unfinished, mismatching or other-data fold, or one whose model file does
    not load (check_model_file), is left out and reported in ``problems`` with the fold and
    the file, never silently.
    """
    by_model: dict[str, dict[int, Path]] = {}
    for run_dir in run_dirs:
        match = FOLD_DIR.search(Path(run_dir).name)
        if match:
            by_model.setdefault(model_key(run_dir), {})[int(match.group(1))] = Path(run_dir)
    train_ids = folds["sample_id"].tolist()
    fold_ids = {k: set(g["sample_id"]) for k, g in folds.groupby("fold")}
    names, oof_list, test_list, last_list, problems = [], [], [], [], []
    for name in sorted(by_model, key=_model_order):
        try:
            oof, test = _assemble_model(by_model[name], fold_ids, train_ids, test_ids,
                                        fingerprint)
        except ValueError as error:
            problems.append(f"{name}: left out: {error}")
            continue
        names.append(name)
        oof_list.append(oof)
        test_list.append(test)
        last_list.append(_last_epoch_oof(by_model[name], fold_ids, train_ids))
    shape = (0, 0, len(LABELS))
    return CollectedModels(names, np.stack(oof_list) if oof_list else np.zeros(shape),
                           np.stack(test_list) if test_list else np.zeros(shape), problems,
                           np.stack(last_list) if last_list else np.zeros(shape))


def _last_epoch_oof(fold_dirs: dict[int, Path], fold_ids: dict[int, set],
                    train_ids: list[str]) -> np.ndarray:
    """(n_train, 9) the last epoch's OOF probabilities of a model's folds, in train_ids order;
    all NaN unless every fold has a readable OOF_LOGITS_LAST with its fold's samples."""
    parts = []
    for k in sorted(fold_ids):
        path = fold_dirs[k] / OOF_LOGITS_LAST
        if not path.is_file():
            return np.full((len(train_ids), len(LABELS)), np.nan)
        part = read_logits(path)
        if set(part.index) != fold_ids[k]:
            return np.full((len(train_ids), len(LABELS)), np.nan)
        parts.append(part)
    return sigmoid(pd.concat(parts).loc[train_ids].to_numpy(dtype=np.float64))


def _assemble_model(fold_dirs: dict[int, Path], fold_ids: dict[int, set], train_ids: list[str],
                    test_ids: list[str], fingerprint: str | None
                    ) -> tuple[np.ndarray, np.ndarray]:
    missing = sorted(set(fold_ids) - set(fold_dirs))
    if missing:
        raise ValueError(f"no run folder for fold(s) {missing} (looked for "
                         f"{_sibling(fold_dirs, missing[0])})")
    unfinished = [k for k in sorted(fold_ids) if not is_done(fold_dirs[k])]
    if unfinished:
        raise ValueError(f"fold(s) {unfinished} not finished: no {fold_dirs[unfinished[0]] / DONE}")
    oof_parts, test_probs = [], []
    for k in sorted(fold_ids):
        if fingerprint is not None:
            seen = read_metrics(fold_dirs[k]).get("data_fingerprint")
            if seen != fingerprint:
                raise ValueError(f"fold {k}: trained on other data ({fold_dirs[k] / METRICS} "
                                 f"has data fingerprint {seen}, this data is {fingerprint})")
        try:
            check_model_file(fold_dirs[k])
        except (ValueError, CheckpointError) as error:
            raise ValueError(f"fold {k}: {error}") from None
        oof = read_logits(fold_dirs[k] / OOF_LOGITS)
        if set(oof.index) != fold_ids[k] or len(oof) != len(fold_ids[k]):
            raise ValueError(f"fold {k}: {fold_dirs[k] / OOF_LOGITS}: its sample ids differ "
                             f"from the folds file's fold {k}")
        test = read_logits(fold_dirs[k] / TEST_LOGITS)
        if sorted(test.index) != sorted(test_ids) or len(test) != len(test_ids):
            raise ValueError(f"fold {k}: {fold_dirs[k] / TEST_LOGITS}: its sample ids differ "
                             f"from the data's val + test ids")
        if not np.isfinite(oof.to_numpy()).all() or not np.isfinite(test.to_numpy()).all():
            bad = OOF_LOGITS if not np.isfinite(oof.to_numpy()).all() else TEST_LOGITS
            raise ValueError(f"fold {k}: {fold_dirs[k] / bad}: non-finite logits")
        oof_parts.append(oof)
        test_probs.append(sigmoid(test.loc[test_ids].to_numpy(dtype=np.float64)))
    oof_logits = pd.concat(oof_parts).loc[train_ids].to_numpy(dtype=np.float64)
    return sigmoid(oof_logits), np.mean(test_probs, axis=0)


def check_model_file(run_dir: Path) -> None:
    """Check that a finished run's model loads, as 04_predict would load it: its
    feature_model.json through lib.feature_models.load_feature_model (ModelFileError, a
    ValueError), else its checkpoint.pt through load_checkpoint, memory-mapped so that the
    tensors are not read (CheckpointError for a missing, truncated or foreign file; damage
    inside a tensor's bytes is found only when the weights are used). ValueError when the
    folder holds neither."""
    from lib.feature_models import FEATURE_MODEL, load_feature_model  # LightGBM where needed

    run_dir = Path(run_dir)
    if (run_dir / FEATURE_MODEL).is_file():
        load_feature_model(run_dir / FEATURE_MODEL)
    elif (run_dir / CHECKPOINT).is_file():
        load_checkpoint(run_dir / CHECKPOINT, mmap=True)
    else:
        raise ValueError(f"{run_dir}: no model file ({CHECKPOINT} or {FEATURE_MODEL}): 04 "
                         f"could not predict with it")


def _sibling(fold_dirs: dict[int, Path], fold: int) -> Path:
    """The folder fold ``fold`` would have, beside the model's other folds."""
    some = next(iter(fold_dirs.values()))
    seed = FOLD_DIR.search(some.name).group(2)
    return some.parent / f"fold{fold}_seed{seed}"


def _model_order(key: str) -> tuple:
    """(name, backbone, seed as a number): the reference's candidate order (ties in the
    selection go to the earlier model)."""
    name, backbone, seed = key.rsplit("/", 2)
    return name, backbone, int(seed.removeprefix("seed")) if seed[4:].isdigit() else seed


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (Path, np.ndarray)):
        return str(value) if isinstance(value, Path) else value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")

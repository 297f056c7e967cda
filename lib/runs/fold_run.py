"""The steps every training notebook (03_train, 03b_train_features) shares around its own fit:
open the run folder, split the samples for one fold, tabulate the OOF loss per label against
the prior, and finish the run (predictions, metrics, DONE last, the closing note).

One fold's rules: train = the train samples of the other folds + every val sample; OOF = the
train samples of this fold; test predictions for val + test (the samples 04 and 05 need).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lib.core.metrics import NonFiniteLossError, per_label_log_loss
from lib.core.paths import dataset_work_dir
from lib.data.folds import check_fold
from lib.data.images import cache_rows
from lib.runs import run_folder


def open_run(*, run_dir: str, notebook_path: str | None, name: str, backbone: str, fold: int,
             seed: int, n_folds: int, data_dir: str, cache_dir: str) -> tuple[Path, Path]:
    """Check the fold (ValueError), resolve and start the run folder (run_folder.resolve_run_dir,
    run_folder.start_run: RunFinishedError for a finished run). Returns (run folder, the data set's
    work folder under ``cache_dir``: folds and image caches)."""
    check_fold(fold, n_folds)
    run_path = run_folder.start_run(run_folder.resolve_run_dir(run_dir, notebook_path, name,
                                                               backbone, fold, seed))
    return run_path, dataset_work_dir(cache_dir, data_dir)


@dataclass(frozen=True)
class FoldSplit:
    """The sample ids of one fold's run: train (other folds + val), oof (this fold), test
    (val + test), each in the data's order."""

    train_ids: list[str]
    oof_ids: list[str]
    test_ids: list[str]

    def rows(self, sample_ids) -> dict[str, np.ndarray]:
        """{"train", "oof", "test"} -> int64 row indices of those samples in ``sample_ids``
        (an image cache's (N,) sample_ids); KeyError naming a sample that is not there."""
        cache = {"sample_ids": sample_ids}
        return {part: cache_rows(cache, ids).astype(np.int64)
                for part, ids in (("train", self.train_ids), ("oof", self.oof_ids),
                                  ("test", self.test_ids))}

    def sizes(self) -> dict[str, int]:
        """{"train": n, "oof": n, "test": n} (what metrics.json records as ``samples``)."""
        return dict(train=len(self.train_ids), oof=len(self.oof_ids), test=len(self.test_ids))


def split_fold(data, folds: pd.DataFrame, fold: int) -> FoldSplit:
    """One fold's FoldSplit of ``data`` (a lib.data.dataset.Competition) with ``folds`` (columns
    sample_id, fold: every train sample)."""
    fold_of = folds.set_index("sample_id")["fold"]
    train = data.split_ids("train")
    return FoldSplit(train_ids=[s for s in train if fold_of[s] != fold] + data.split_ids("val"),
                     oof_ids=[s for s in train if fold_of[s] == fold],
                     test_ids=data.split_ids("val", "test"))


def check_cache_size(cache: dict, m_bins: int, t_bins: int) -> None:
    """ValueError naming m_bins / t_bins unless the cache's images are (N, m_bins, t_bins)."""
    got = tuple(np.shape(cache["images"])[1:])
    if got != (m_bins, t_bins):
        raise ValueError(f"the image cache holds {got[0]} m/z x {got[1]} time bins, but the "
                         f"parameters ask for m_bins={m_bins}, t_bins={t_bins}")


def oof_table(oof_labels: pd.DataFrame, oof_logits: np.ndarray, train_labels: pd.DataFrame
              ) -> tuple[np.ndarray, pd.DataFrame]:
    """The OOF log loss per label of a run's logits and of the training prior.

    oof_labels: (n, 9) 0/1 frame of the OOF samples; oof_logits: (n, 9); train_labels: the
    training samples' labels (their mean is the prior). Returns (the model's per-label loss
    (9,), a table of rows model / prior only / positives with a mean column, rounded to 4)."""
    per_label = per_label_log_loss(oof_labels.to_numpy(), 1 / (1 + np.exp(-oof_logits)))
    prior = per_label_log_loss(oof_labels.to_numpy(), np.broadcast_to(
        train_labels.mean().to_numpy(), oof_labels.shape))
    table = pd.DataFrame({"model": per_label, "prior only": prior,
                          "positives": oof_labels.sum()}, index=oof_labels.columns).T
    return per_label, table.assign(mean=lambda t: t.mean(axis=1)).round(4)


def check_given_parameters(notebook: str) -> None:
    """ValueError naming the parameter when papermill gave the executing ``notebook`` one
    that its parameters cell does not define (papermill itself only warns, and the value is
    never used). What papermill gave is read from its injected cell ("# Parameters" first,
    in IPython's input history); PAPERMILL_* paths are papermill's own. Outside IPython, or
    run by hand, nothing is checked."""
    from IPython import get_ipython

    from lib.runs.plans import notebook_parameters, unknown_parameter

    shell = get_ipython()
    if shell is None:
        return
    known = notebook_parameters(notebook)
    for source in shell.user_ns.get("In", []):
        if not source.startswith("# Parameters\n"):
            continue
        for node in ast.parse(source).body:
            for target in node.targets if isinstance(node, ast.Assign) else []:
                name = getattr(target, "id", None)
                if name and name not in known and not name.startswith("PAPERMILL_"):
                    raise ValueError(f"papermill parameter "
                                     f"{unknown_parameter(name, known, [notebook])}")


def model_identity(data, *, name: str, backbone: str, fold: int, seed: int) -> dict:
    """What a run's model file records about the run that made it ({"name", "backbone",
    "fold", "seed", "data_fingerprint"}), so that loading it can compare it with the run
    folder's metrics.json (lib.train.checkpoint.check_model_identity). ``data``: the
    lib.data.dataset Competition the run learned from."""
    return dict(name=name, backbone=backbone, fold=int(fold), seed=int(seed),
                data_fingerprint=run_folder.data_fingerprint(data))


def finish_run(run_path: Path, split: FoldSplit, oof_logits: np.ndarray,
               test_logits: np.ndarray, metrics: dict, *, data, notebook_name: str,
               started_at: float, oof_last_logits: np.ndarray | None = None) -> str:
    """Write the run's predictions (OOF (n_oof, 9), test (n_test, 9) and optionally the last
    epoch's OOF, keyed by sample_id), metrics.json (``metrics`` plus the data fingerprint and
    the split's sizes) and, last, DONE. Returns run_folder.closing_note (``started_at``: the
    execution's start, a time.time()). NonFiniteLossError, before anything is written, when
    a logit or metrics' best_oof_loss is NaN or inf (a diverged fit is a failed run)."""
    for what, values in (("OOF logits", oof_logits), ("test logits", test_logits)):
        bad = int((~np.isfinite(np.asarray(values, dtype=np.float64))).sum())
        if bad:
            raise NonFiniteLossError(f"{run_path}: {bad} of the {what} are NaN or inf (the "
                                     f"fit diverged); the run is not finished")
    if not np.isfinite(metrics.get("best_oof_loss", 0.0)):
        raise NonFiniteLossError(f"{run_path}: best_oof_loss is {metrics['best_oof_loss']} "
                                 f"(the fit diverged); the run is not finished")
    run_folder.write_predictions(run_path, run_folder.label_frame(split.oof_ids, oof_logits),
                           run_folder.label_frame(split.test_ids, test_logits),
                           oof_last=None if oof_last_logits is None
                           else run_folder.label_frame(split.oof_ids, oof_last_logits))
    run_folder.write_metrics(run_path, {**metrics,
                                        "data_fingerprint": run_folder.data_fingerprint(data),
                                        "samples": split.sizes()})
    run_folder.mark_done(run_path)
    return run_folder.closing_note(run_path, notebook_name, started_at)

"""Multilabel stratified folds over the train split (method.md section 5)."""

from pathlib import Path

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

from lib.core.schema import LABELS


def make_folds(train_labels: pd.DataFrame, n_folds: int = 5, seed: int = 42) -> pd.DataFrame:
    """Assign each train sample to a fold.

    train_labels: train_labels.csv as read by pandas (sample_id + the 9 label columns), in file
    order; the order matters, it is what the stratifier shuffles.
    Returns a DataFrame with columns ``sample_id, fold`` (fold in 0..n_folds-1), same row order.
    """
    missing = [c for c in ("sample_id", *LABELS) if c not in train_labels.columns]
    if missing:
        raise ValueError(f"train labels lack columns {missing}")
    labels = train_labels[list(LABELS)].to_numpy()
    fold = np.full(len(train_labels), -1, dtype=int)
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        fold[held_out] = k
    return pd.DataFrame({"sample_id": train_labels["sample_id"].to_numpy(), "fold": fold})


def folds_file(work_dir: str | Path, n_folds: int = 5, seed: int = 42) -> Path:
    """Where the folds of one setting live: work_dir/folds_n<n_folds>_seed<seed>.csv. Keyed by
    the setting, so a run with another n_folds or fold_seed never reads the wrong file."""
    return Path(work_dir) / f"folds_n{n_folds}_seed{seed}.csv"


def check_fold(fold: int, n_folds: int) -> None:
    """ValueError unless ``fold`` is one of 0..n_folds-1 (before any training starts)."""
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold {fold} does not exist: with n_folds={n_folds} the folds are "
                         f"0..{n_folds - 1}")


def load_or_make_folds(work_dir: str | Path, train_labels: pd.DataFrame, n_folds: int = 5,
                       seed: int = 42) -> pd.DataFrame:
    """The folds of this setting (folds_file, written by 02_preprocess) if the file covers
    exactly the train samples with folds 0..n_folds-1, else make_folds written there.
    Returns columns ``sample_id, fold``."""
    from lib.core.files import atomic_write_csv

    path = folds_file(work_dir, n_folds, seed)
    if path.is_file():
        folds = pd.read_csv(path, dtype={"sample_id": str})
        if sorted(folds["sample_id"]) != sorted(train_labels["sample_id"]):
            raise ValueError(f"{path}: its sample ids differ from the train labels; delete it "
                             f"or run 02_preprocess again")
        if sorted(set(folds["fold"])) != list(range(n_folds)):
            raise ValueError(f"{path}: holds folds {sorted(set(folds['fold']))}, not "
                             f"0..{n_folds - 1}; delete it or run 02_preprocess again")
        return folds
    folds = make_folds(train_labels, n_folds=n_folds, seed=seed)
    atomic_write_csv(folds, path)
    return folds

"""Multilabel stratified folds over the train split (method.md section 5)."""

from pathlib import Path

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

from lib.schema import LABELS


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


def load_or_make_folds(path: str | Path, train_labels: pd.DataFrame, n_folds: int = 5,
                       seed: int = 42) -> pd.DataFrame:
    """The folds file at ``path`` (written by 02_preprocess) if it covers exactly the train
    samples, else make_folds written there. Returns columns ``sample_id, fold``."""
    from lib.files import atomic_write_csv

    path = Path(path)
    if path.is_file():
        folds = pd.read_csv(path)
        if sorted(folds["sample_id"]) != sorted(train_labels["sample_id"]):
            raise ValueError(f"{path}: its sample ids differ from the train labels; delete it "
                             f"or run 02_preprocess again")
        return folds
    folds = make_folds(train_labels, n_folds=n_folds, seed=seed)
    atomic_write_csv(folds, path)
    return folds

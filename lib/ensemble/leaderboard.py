"""Scoring on hidden test labels, like the private leaderboard.

Synthetic folders hold ``test_labels.csv`` (the test split's labels; real competition folders
have none). Only scoring reads it: never loading, training or selection. Shapes: test_ids
(m,); probabilities (m, 9) in test_ids order.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from lib.core.metrics import per_label_log_loss
from lib.core.schema import LABELS
from lib.data.dataset import DataError, read_labels
from lib.synthetic import TEST_LABELS


def read_test_labels(path: str | Path, test_ids: list[str]) -> pd.DataFrame:
    """The labels of the test split, (m, 9) int 0/1 indexed by sample_id in ``test_ids``
    order. DataError naming the file and the row when a value is not 0/1, a column is wrong,
    an id repeats or is not a test sample of the data, and naming the test samples it lacks."""
    path = Path(path)
    labels = read_labels(path)
    wanted = set(test_ids)
    for row, sample_id in enumerate(labels.index, start=2):
        if sample_id not in wanted:
            raise DataError(f"{path}: row {row}: sample {sample_id} is not a test sample of "
                            f"this data's metadata.csv")
    missing = [s for s in test_ids if s not in labels.index]
    if missing:
        raise DataError(f"{path}: no row for {len(missing)} test samples of metadata.csv, "
                        f"e.g. {missing[:3]}")
    return labels.loc[list(test_ids)]


def load_test_labels(data_dir: str | Path, test_ids: list[str]
                     ) -> tuple[pd.DataFrame | None, str | None]:
    """(labels, problem): read_test_labels of ``data_dir/test_labels.csv``; (None, None) when
    the folder has none (real data); (None, the DataError's message) when it cannot be used,
    so that nothing is scored against wrong labels."""
    path = Path(data_dir) / TEST_LABELS
    if not path.is_file():
        return None, None
    try:
        return read_test_labels(path, test_ids), None
    except DataError as error:
        return None, str(error)


def loss_table(labels: np.ndarray, predictions: Mapping[str, np.ndarray],
               column: str = "loss") -> pd.DataFrame:
    """One row per predictor: the aggregated log loss (``column``) and the log loss of each
    label (LABELS). labels (n, 9) 0/1; predictions: name -> probabilities (n, 9)."""
    table = pd.DataFrame({name: per_label_log_loss(labels, p) for name, p in predictions.items()},
                         index=list(LABELS)).T
    table.insert(0, column, table.mean(axis=1))
    return table


def side_by_side(oof: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Two tables of the same rows and columns (e.g. loss_table on OOF and on test) -> one
    whose columns are (column, "OOF") and (column, "test") pairs, in ``oof``'s column order,
    and rows in ``oof``'s order (rows missing from ``test`` get NaN)."""
    parts = {(c, split): frame[c] for c in oof.columns
             for split, frame in (("OOF", oof), ("test", test.reindex(oof.index)))}
    return pd.DataFrame(parts, index=oof.index)

"""lib.runs.fold_run: the steps 03_train and 03b_train_features share (open, split, OOF table,
finish), on the hand-made competition folder."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from lib.core.metrics import NonFiniteLossError
from lib.core.schema import LABELS, N_LABELS
from lib.data.dataset import load_competition
from lib.runs import fold_run
from lib.runs.run_folder import (
    DONE,
    OOF_LOGITS,
    OOF_LOGITS_LAST,
    RunFinishedError,
    data_fingerprint,
    read_logits,
    read_metrics,
)


def folds_of(data, n_folds: int = 5) -> pd.DataFrame:
    ids = data.split_ids("train")
    return pd.DataFrame({"sample_id": ids, "fold": np.arange(len(ids)) % n_folds})


def test_split_fold_follows_the_rules(competition_dir):
    data = load_competition(competition_dir)
    split = fold_run.split_fold(data, folds_of(data), fold=1)
    train, val, test = (data.split_ids(s) for s in ("train", "val", "test"))
    assert split.oof_ids == [train[1], train[6]]
    assert split.train_ids == [s for s in train if s not in split.oof_ids] + val
    assert split.test_ids == val + test
    assert split.sizes() == dict(train=11, oof=2, test=5)
    rows = split.rows(list(reversed(data.metadata["sample_id"])))  # cache order differs
    n = len(data.metadata)
    assert rows["oof"].dtype == np.int64
    assert [n - 1 - r for r in rows["oof"]] == [data.metadata["sample_id"].tolist().index(s)
                                                for s in split.oof_ids]
    assert {k: len(v) for k, v in rows.items()} == split.sizes()
    last_test = split.test_ids[-1]  # a cache made for other data: the sample is named
    with pytest.raises(KeyError, match=f"sample '{last_test}' is not in the cache"):
        split.rows([s for s in data.metadata["sample_id"] if s != last_test])


def test_oof_table_against_the_prior():
    labels = pd.DataFrame(np.eye(4, N_LABELS, dtype=int), columns=LABELS)
    per_label, table = fold_run.oof_table(labels, np.where(labels, 5.0, -5.0),
                                          labels.iloc[:2])
    assert per_label.shape == (N_LABELS,) and per_label.max() < 0.01
    assert list(table.index) == ["model", "prior only", "positives"]
    assert list(table.columns) == [*LABELS, "mean"]
    assert table.loc["positives", LABELS[0]] == 1 and table.loc["prior only"].max() > 1


def test_open_and_finish_a_run(competition_dir, tmp_path):
    data = load_competition(competition_dir)
    with pytest.raises(ValueError, match="fold 5 does not exist"):
        fold_run.open_run(run_dir=str(tmp_path / "r"), notebook_path=None, name="n",
                          backbone="b", fold=5, seed=0, n_folds=5, data_dir=str(competition_dir),
                          cache_dir=str(tmp_path / "cache"))
    run_path, work_dir = fold_run.open_run(
        run_dir=str(tmp_path / "r"), notebook_path=None, name="n", backbone="b", fold=0, seed=0,
        n_folds=5, data_dir=str(competition_dir), cache_dir=str(tmp_path / "cache"))
    assert run_path == tmp_path / "r" and run_path.is_dir()
    assert work_dir == tmp_path / "cache" / competition_dir.name
    split = fold_run.split_fold(data, folds_of(data), fold=0)
    oof = np.full((len(split.oof_ids), N_LABELS), 0.5)
    test = np.zeros((len(split.test_ids), N_LABELS))
    note = fold_run.finish_run(run_path, split, oof, test, dict(parameters={"fold": 0}),
                               data=data, notebook_name="03_train.ipynb",
                               started_at=time.time(), oof_last_logits=oof - 1)
    assert (run_path / DONE).is_file() and f"Run folder: {run_path}" in note
    assert list(read_logits(run_path / OOF_LOGITS).index) == split.oof_ids
    assert read_logits(run_path / OOF_LOGITS_LAST).to_numpy().max() == pytest.approx(-0.5)
    metrics = read_metrics(run_path)
    assert metrics["samples"] == split.sizes() and metrics["parameters"] == {"fold": 0}
    assert metrics["data_fingerprint"] == data_fingerprint(data)
    with pytest.raises(RunFinishedError):
        fold_run.open_run(run_dir=str(run_path), notebook_path=None, name="n", backbone="b",
                          fold=0, seed=0, n_folds=5, data_dir=str(competition_dir),
                          cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("where", ["oof", "test", "loss"])
def test_a_run_with_non_finite_predictions_is_not_finished(competition_dir, tmp_path, where):
    """A diverged fit used to write OOF nan and DONE; now it fails before anything is written."""
    data = load_competition(competition_dir)
    split = fold_run.split_fold(data, folds_of(data), fold=0)
    oof = np.zeros((len(split.oof_ids), N_LABELS))
    test = np.zeros((len(split.test_ids), N_LABELS))
    metrics = dict(best_oof_loss=0.69)
    if where == "oof":
        oof[1, 2] = np.nan
    elif where == "test":
        test[0, 0] = np.inf
    else:
        metrics["best_oof_loss"] = float("nan")
    run_path = tmp_path / "r"
    run_path.mkdir()
    message = {"oof": "1 of the OOF logits are NaN or inf", "test": "1 of the test logits",
               "loss": "best_oof_loss is nan"}[where]
    with pytest.raises(NonFiniteLossError, match=rf"{run_path}: {message}"):
        fold_run.finish_run(run_path, split, oof, test, metrics, data=data,
                            notebook_name="03b_train_features.ipynb", started_at=time.time())
    assert list(run_path.iterdir()) == []


def test_a_cache_of_another_size_is_refused_naming_the_parameters():
    cache = {"images": np.zeros((3, 64, 96), dtype=np.float32)}
    fold_run.check_cache_size(cache, 64, 96)
    with pytest.raises(ValueError, match=r"holds 64 m/z x 96 time bins, but the parameters ask "
                                         r"for m_bins=256, t_bins=96"):
        fold_run.check_cache_size(cache, 256, 96)

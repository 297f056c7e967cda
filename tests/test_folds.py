"""Multilabel stratified folds."""

import numpy as np
import pandas as pd
import pytest

from lib.core.schema import LABELS
from lib.data.folds import make_folds


def label_table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rates = np.array([0.1, 0.33, 0.14, 0.12, 0.03, 0.04, 0.03, 0.03, 0.15])
    values = (rng.random((n, len(LABELS))) < rates).astype(int)
    return pd.DataFrame(values, columns=list(LABELS)).assign(
        sample_id=[f"S{i:04d}" for i in range(n)])[["sample_id", *LABELS]]


def test_folds_partition_and_balance():
    labels = label_table()
    folds = make_folds(labels)
    assert list(folds.columns) == ["sample_id", "fold"]
    assert folds["sample_id"].tolist() == labels["sample_id"].tolist()
    sizes = folds["fold"].value_counts()
    assert sorted(sizes.index) == [0, 1, 2, 3, 4] and sizes.max() - sizes.min() <= 1
    per_fold = labels[list(LABELS)].groupby(folds["fold"]).sum()
    # stratified: every label's positives spread evenly (within one or two) over the folds
    assert ((per_fold.max() - per_fold.min()) <= 2).all()


def test_folds_are_deterministic_and_depend_on_seed_and_order():
    labels = label_table()
    first = make_folds(labels, seed=42)
    assert first.equals(make_folds(labels, seed=42))
    assert not first["fold"].equals(make_folds(labels, seed=7)["fold"])
    shuffled = labels.sample(frac=1, random_state=1).reset_index(drop=True)
    by_id = make_folds(shuffled).set_index("sample_id")["fold"]
    assert not by_id.loc[first["sample_id"]].reset_index(drop=True).equals(first["fold"])


def test_folds_need_label_columns():
    with pytest.raises(ValueError, match=r"lack columns \['mineral'\]"):
        make_folds(label_table().drop(columns=["mineral"]))


def test_folds_files_are_keyed_by_their_setting(tmp_path):
    from lib.data.folds import check_fold, folds_file, load_or_make_folds

    labels = label_table(60)
    five = load_or_make_folds(tmp_path, labels, n_folds=5, seed=42)
    three = load_or_make_folds(tmp_path, labels, n_folds=3, seed=1)
    assert set(five["fold"]) == {0, 1, 2, 3, 4} and set(three["fold"]) == {0, 1, 2}
    assert folds_file(tmp_path, 3, 1).name == "folds_n3_seed1.csv"
    pd.testing.assert_frame_equal(load_or_make_folds(tmp_path, labels, n_folds=3, seed=1), three)
    broken = three.assign(fold=three["fold"] % 2)  # a hand-edited file that lost a fold
    broken.to_csv(folds_file(tmp_path, 3, 1), index=False)
    with pytest.raises(ValueError, match=r"folds_n3_seed1.csv: holds folds \[0, 1\], not 0..2"):
        load_or_make_folds(tmp_path, labels, n_folds=3, seed=1)
    check_fold(4, 5)
    with pytest.raises(ValueError, match=r"fold 5 does not exist: with n_folds=5 the folds are"):
        check_fold(5, 5)
    with pytest.raises(ValueError, match="fold -1 does not exist"):
        check_fold(-1, 5)

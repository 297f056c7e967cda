"""Scoring on hidden test labels: reading them strictly, loss tables, OOF beside test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib.core.metrics import aggregated_log_loss
from lib.core.schema import LABELS
from lib.data.dataset import DataError
from lib.ensemble import leaderboard

TEST_IDS = ["S0030", "S0031", "S0032"]


def write_labels(path, ids, values=None):
    values = np.zeros((len(ids), len(LABELS)), dtype=int) if values is None else values
    frame = pd.DataFrame(values, columns=list(LABELS))
    frame.insert(0, "sample_id", ids)
    frame.to_csv(path, index=False)
    return path


def test_reads_labels_in_the_test_split_order(tmp_path):
    values = np.eye(3, len(LABELS), dtype=int)
    path = write_labels(tmp_path / "test_labels.csv", TEST_IDS[::-1], values)
    labels = leaderboard.read_test_labels(path, TEST_IDS)
    assert labels.index.tolist() == TEST_IDS
    np.testing.assert_array_equal(labels.to_numpy(), values[::-1])


def test_a_value_other_than_0_or_1_names_the_file_and_row(tmp_path):
    values = np.zeros((3, len(LABELS)), dtype=float)
    values[1, 2] = 0.5
    path = write_labels(tmp_path / "test_labels.csv", TEST_IDS, values)
    with pytest.raises(DataError, match=r"test_labels.csv: row 3 \(sample S0031\).*0 or 1"):
        leaderboard.read_test_labels(path, TEST_IDS)


def test_ids_that_do_not_match_the_test_split_are_named(tmp_path):
    path = write_labels(tmp_path / "test_labels.csv", ["S0030", "S0001", "S0032"])
    with pytest.raises(DataError, match=r"test_labels.csv: row 3: sample S0001 is not a test"):
        leaderboard.read_test_labels(path, TEST_IDS)
    path = write_labels(tmp_path / "test_labels.csv", TEST_IDS[:2])
    with pytest.raises(DataError, match=r"test_labels.csv: no row for 1 test samples.*S0032"):
        leaderboard.read_test_labels(path, TEST_IDS)


def test_load_says_nothing_without_a_file_and_the_problem_with_a_bad_one(tmp_path):
    assert leaderboard.load_test_labels(tmp_path, TEST_IDS) == (None, None)
    write_labels(tmp_path / "test_labels.csv", ["S0030", "S0030", "S0032"])
    labels, problem = leaderboard.load_test_labels(tmp_path, TEST_IDS)
    assert labels is None and "test_labels.csv" in problem and "duplicate" in problem
    write_labels(tmp_path / "test_labels.csv", TEST_IDS)
    labels, problem = leaderboard.load_test_labels(tmp_path, TEST_IDS)
    assert problem is None and labels.shape == (3, len(LABELS))


def test_loss_table_and_side_by_side_by_hand():
    labels = np.array([[1] * 9, [0] * 9])
    sure, unsure = np.where(labels == 1, 0.9, 0.1), np.full((2, 9), 0.5)
    table = leaderboard.loss_table(labels, {"sure": sure, "unsure": unsure})
    assert table.columns.tolist() == ["loss", *LABELS]
    assert table.loc["sure", "loss"] == pytest.approx(-np.log(0.9))
    assert table.loc["unsure", "loss"] == pytest.approx(aggregated_log_loss(labels, unsure))
    other = leaderboard.loss_table(labels, {"unsure": sure})
    both = leaderboard.side_by_side(table, other)
    assert both.columns[:4].tolist() == [("loss", "OOF"), ("loss", "test"),
                                         (LABELS[0], "OOF"), (LABELS[0], "test")]
    assert both.loc["unsure", ("loss", "OOF")] == pytest.approx(np.log(2))
    assert both.loc["unsure", ("loss", "test")] == pytest.approx(-np.log(0.9))
    assert np.isnan(both.loc["sure", ("loss", "test")])

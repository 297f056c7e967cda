"""Logit averaging, the selection procedures on hand-checkable cases, and submissions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib import ensemble
from lib.metrics import aggregated_log_loss
from lib.schema import LABELS


def test_mean_logits_by_hand():
    probs = np.array([[[0.5] * 9], [[0.9] * 9]])  # 2 runs, 1 sample
    out = ensemble.mean_logits(probs)
    expected = 1 / (1 + np.exp(-(0 + np.log(9)) / 2))  # sigmoid(mean(logit)) = 0.75
    np.testing.assert_allclose(out, np.full((1, 9), expected), rtol=1e-6)
    assert expected == pytest.approx(0.75)
    clipped = ensemble.mean_logits(np.array([[[0.0] * 9], [[1.0] * 9]]))  # clip 1e-4 each side
    np.testing.assert_allclose(clipped, 0.5, atol=1e-6)


def test_selection_score_takes_the_best_clip():
    labels = np.zeros((4, 9))
    labels[0] = 1
    confident = np.where(labels == 1, 1.0 - 1e-9, 1e-9)
    confident[1, 0] = 1 - 1e-9  # one confident mistake: clipping helps a lot
    score, clip = ensemble.selection_score(confident, labels)
    assert clip > 0
    assert score == pytest.approx(aggregated_log_loss(labels, confident * (1 - 2 * clip) + clip))
    assert score < aggregated_log_loss(labels, confident)
    assert ensemble.selection_score(np.full((4, 9), 0.25), labels)[1] == 0.0


def three_runs():
    """Run 0 good, run 1 its near copy with small errors, run 2 wrong where 0 is unsure."""
    labels = np.array([[1] * 9, [0] * 9, [1] * 9, [0] * 9], dtype=float)
    good = np.where(labels == 1, 0.8, 0.2)
    near = np.where(labels == 1, 0.75, 0.2)
    bad = np.where(labels == 1, 0.3, 0.6)
    return np.stack([near, good, bad]), labels


def test_grow_by_one_by_hand():
    probs, labels = three_runs()
    trace = []
    chosen = ensemble.grow_by_one(probs, labels, trace=trace)
    assert chosen == [1]  # the best single run; adding others only hurts
    assert [size for size, _ in trace] == [1, 2, 3]
    assert trace[0][1] == pytest.approx(ensemble.selection_score(probs[1], labels)[0])
    assert trace[0][1] < trace[1][1] < trace[2][1]


def test_grow_by_one_adds_a_complementary_run():
    labels = np.array([[1] * 9, [0] * 9], dtype=float)
    first = np.array([[0.9] * 9, [0.6] * 9])  # good on sample 0 only
    second = np.array([[0.6] * 9, [0.1] * 9])  # good on sample 1 only
    useless = np.full((2, 9), 0.5)
    chosen = ensemble.grow_by_one(np.stack([useless, first, second]), labels)
    assert sorted(chosen) == [1, 2] and len(chosen) == 2


def test_remove_by_one_by_hand():
    probs, labels = three_runs()
    trace = []
    kept = ensemble.remove_by_one(probs, labels, trace=trace)
    assert kept == [1]  # drop the bad run first, then the weaker copy
    assert [size for size, _ in trace] == [3, 2, 1]
    only_good = ensemble.remove_by_one(probs[:2], labels)
    assert only_good == [1]


def test_remove_by_one_keeps_everything_when_all_help():
    labels = np.array([[1] * 9, [0] * 9], dtype=float)
    first = np.array([[0.9] * 9, [0.6] * 9])
    second = np.array([[0.6] * 9, [0.1] * 9])
    assert ensemble.remove_by_one(np.stack([first, second]), labels) == [0, 1]


def test_make_and_validate_submission():
    fmt = pd.DataFrame({"sample_id": ["S2", "S1"], **{c: 0.5 for c in LABELS}})
    probs = np.array([[0.1] * 9, [0.9] * 9])
    sub = ensemble.make_submission(["S1", "S2"], probs, fmt)
    assert sub["sample_id"].tolist() == ["S2", "S1"]
    np.testing.assert_allclose(sub[list(LABELS)].to_numpy(), probs[::-1])
    with pytest.raises(ValueError, match="no predictions for 1 submission rows"):
        ensemble.make_submission(["S1"], probs[:1], fmt)
    bad = sub.copy()
    bad.loc[0, "mineral"] = np.nan
    with pytest.raises(ValueError, match="1 NaN probabilities"):
        ensemble.validate_submission(bad, fmt)
    bad.loc[0, "mineral"] = 1.5
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        ensemble.validate_submission(bad, fmt)
    with pytest.raises(ValueError, match="sample ids differ"):
        ensemble.validate_submission(sub.iloc[::-1], fmt)
    with pytest.raises(ValueError, match="columns"):
        ensemble.validate_submission(sub.drop(columns=["mineral"]), fmt)


def test_check_finite_names_the_samples():
    from lib.ensemble import check_finite

    values = np.full((4, 9), 0.5)
    check_finite(["a", "b", "c", "d"], values)
    values[1, 3], values[3, 0] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"predictions: non-finite values for 2 samples: "
                       r"\['b', 'd'\]"):
        check_finite(["a", "b", "c", "d"], values)

"""The competition metric."""

import numpy as np
import pytest

from lib.core.metrics import (
    aggregated_log_loss,
    paired_bootstrap,
    per_label_log_loss,
    per_sample_log_loss,
)


def test_log_loss_hand_values():
    assert aggregated_log_loss([[1, 0]], [[0.5, 0.5]]) == pytest.approx(np.log(2))
    # label 0: -(ln .8 + ln .6) / 2; label 1: -(ln .9 + ln .9) / 2; then the mean of the two
    expected = (-(np.log(0.8) + np.log(0.6)) / 2 - np.log(0.9)) / 2
    loss = aggregated_log_loss(np.array([[1, 0], [0, 1]]), np.array([[0.8, 0.1], [0.4, 0.9]]))
    assert loss == pytest.approx(expected)
    # clipping keeps a confident miss finite
    assert aggregated_log_loss([[1]], [[0.0]]) == pytest.approx(-np.log(1e-15))
    with pytest.raises(ValueError):
        aggregated_log_loss(np.zeros((2, 9)), np.zeros((3, 9)))


def test_per_label_log_loss():
    losses = per_label_log_loss(np.array([[1, 0]]), np.array([[0.5, 0.25]]))
    np.testing.assert_allclose(losses, [np.log(2), -np.log(0.75)])


def test_per_sample_losses_average_to_the_aggregated_loss():
    rng = np.random.default_rng(0)
    labels = (rng.random((50, 9)) < 0.3).astype(int)
    probabilities = rng.random((50, 9))
    per_sample = per_sample_log_loss(labels, probabilities)
    assert per_sample.shape == (50,)
    assert per_sample.mean() == pytest.approx(aggregated_log_loss(labels, probabilities))


def test_paired_bootstrap_tells_a_better_predictor_from_luck():
    rng = np.random.default_rng(1)
    labels = (rng.random((300, 9)) < 0.3).astype(int)
    noisy = np.clip(labels * 0.6 + rng.random((300, 9)) * 0.4, 0.01, 0.99)
    sharper = np.clip(labels * 0.8 + rng.random((300, 9)) * 0.2, 0.01, 0.99)
    better = paired_bootstrap(labels, sharper, noisy)
    assert better["difference"] == pytest.approx(aggregated_log_loss(labels, sharper)
                                                 - aggregated_log_loss(labels, noisy))
    assert better["low"] < better["difference"] < better["high"] < 0
    assert paired_bootstrap(labels, sharper, noisy) == better  # deterministic for a seed
    # two predictors that differ by noise alone: the interval holds 0
    other = np.clip(labels * 0.6 + rng.random((300, 9)) * 0.4, 0.01, 0.99)
    luck = paired_bootstrap(labels, other, noisy)
    assert luck["low"] < 0 < luck["high"]
    same = paired_bootstrap(labels, noisy, noisy)
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0}

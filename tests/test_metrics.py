"""The competition metric."""

import numpy as np
import pytest

from lib.core.metrics import aggregated_log_loss, per_label_log_loss


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

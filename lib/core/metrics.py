"""The competition metric: aggregated log loss = mean over labels of the binary log loss."""

from __future__ import annotations

import numpy as np

EPS = 1e-15


class NonFiniteLossError(RuntimeError):
    """A loss or a prediction became NaN or inf: the run stops before DONE (03's fit, the
    feature MLP's fit, and lib.runs.fold_run.finish_run for every notebook)."""


def per_label_log_loss(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Binary log loss of each label. labels, probabilities: (n, 9) -> (9,) float64.
    Probabilities are clipped to [1e-15, 1 - 1e-15] as in scikit-learn."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPS, 1 - EPS)
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} differ in shape")
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=0)


def aggregated_log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean over labels of per_label_log_loss: the leaderboard metric (lower is better)."""
    return float(per_label_log_loss(labels, probabilities).mean())

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


def per_sample_log_loss(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Each sample's log loss averaged over the labels: (n, 9) -> (n,) float64. Its mean over
    the samples is aggregated_log_loss (every label has the same n samples)."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPS, 1 - EPS)
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} differ in shape")
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=1)


def paired_bootstrap(labels: np.ndarray, first: np.ndarray, second: np.ndarray, *,
                     resamples: int = 2000, level: float = 0.95, seed: int = 0
                     ) -> dict[str, float]:
    """How much lower ``first``'s aggregated log loss is than ``second``'s on the same samples,
    and how sure: labels, first, second (n, 9) -> {"difference": loss(first) - loss(second),
    "low", "high": the percentile interval at ``level`` of that difference over ``resamples``
    resamplings of the n samples with replacement (the same samples for both, so what they
    share cancels)}. An interval below 0 says ``first`` is better beyond the samples' luck.
    Deterministic for a seed."""
    gaps = per_sample_log_loss(labels, first) - per_sample_log_loss(labels, second)
    rng = np.random.default_rng(seed)
    means = np.array([gaps[rng.integers(0, len(gaps), len(gaps))].mean()
                      for _ in range(resamples)])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"difference": float(gaps.mean()), "low": float(low), "high": float(high)}

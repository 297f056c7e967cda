"""Combining runs (method.md section 7)."""

from __future__ import annotations

import numpy as np

LOGIT_CLIP = 1e-4


def mean_logits(probabilities: np.ndarray, clip: float = LOGIT_CLIP) -> np.ndarray:
    """(runs, n, 9) probabilities -> (n, 9): clip to [clip, 1 - clip], logit, mean over runs,
    sigmoid."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), clip, 1 - clip)
    logits = np.log(p / (1 - p)).mean(axis=0)
    return (1 / (1 + np.exp(-logits))).astype(np.float32)

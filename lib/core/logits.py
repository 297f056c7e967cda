"""Probabilities <-> logits, for the feature models, prediction and the ensemble alike."""

from __future__ import annotations

import numpy as np

LOGIT_CLIP = 1e-4


def to_logits(probabilities: np.ndarray, clip: float = LOGIT_CLIP) -> np.ndarray:
    """Probabilities clipped to [clip, 1 - clip] -> logits (float64), same shape."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), clip, 1 - clip)
    return np.log(p / (1 - p))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-logits))

"""What an explanation of one model (or of the ensemble) holds: the record explainer fills
and scoring reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ModelExplanation:
    """What explain_model (or explain_ensemble) found for one model (the folds of one
    name/backbone/seed) or for the ensemble.

    family: "cnn", "feature" or "ensemble"; map_method: what ``maps`` are (e.g. "layercam at
    backbone.blocks.2", "coef x standardised value"); picked: {label: [sample_id, ...]} the
    positive OOF samples explained per label; maps: {label: {sample_id: (m, t) float32 map}};
    drops: {sample_id: (m, 9) float32 occlusion drops}; probs: {sample_id: (9,) probabilities
    of the fold model that did not train on it}; images: {sample_id: (m, t) float32 cached
    image}; problems: one line per run, label or method left out, and why; seconds: wall time.
    """

    name: str
    family: str = ""
    map_method: str = ""
    picked: dict[str, list[str]] = field(default_factory=dict)
    maps: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    drops: dict[str, np.ndarray] = field(default_factory=dict)
    probs: dict[str, np.ndarray] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

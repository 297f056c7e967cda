"""Model families by name: which backbone names are feature learners (03b) and which are 1D
sequence models (03), so that a model key names its family from its name alone, loading
nothing (the ensemble sees only files)."""

from __future__ import annotations

LEARNERS = ("lightgbm", "logistic", "mlp")  # the feature learners of 03b (lib.models)
SEQ_BACKBONES = ("seq1d", "seq1d_tiny")  # 1D sequence backbones of 03 (lib.models.seq1d)


def model_family(key: str) -> str:
    """The family of a model key <name>/<backbone>/seed<s>, from its backbone: "features:
    <learner>" for a feature learner (LEARNERS), "1D sequence" for a SEQ_BACKBONES name, else
    "2D CNN" (a timm backbone)."""
    backbone = key.rsplit("/", 2)[-2]
    if backbone in LEARNERS:
        return f"features: {backbone}"
    return "1D sequence" if backbone in SEQ_BACKBONES else "2D CNN"

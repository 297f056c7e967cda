"""The settings of one feature-model fit (03b_train_features), checked when they are made.

Kept apart from lib.models.feature_models (LightGBM, scikit-learn, torch) so that lib.sweep can
check a plan's 03b parameters before it launches anything, without importing those libraries.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from lib.core.families import LEARNERS
from lib.data.features import FEATURE_KINDS

ACTIVATIONS = ("gelu", "relu")
NON_NEGATIVE_KINDS = ("bands", "benchmark")  # kinds the logistic regression's log10 can take


@dataclass(frozen=True)
class FeatureSettings:
    """Every knob of one feature-model fit. The LightGBM ones are LightGBM's own parameter
    names; ``C`` is the logistic regression's inverse L2 strength (on standardised features);
    the MLP's are ``hidden`` (widths of its hidden layers), ``activation``, ``dropout``,
    ``mlp_epochs`` (a fixed number: nothing looks at the OOF fold), ``mlp_lr`` and
    ``mlp_weight_decay`` (AdamW, cosine decay to 0 over the epochs), ``mlp_batch_size`` and
    ``n_seeds`` (networks of different seeds averaged, logit mean). ValueError naming the
    parameter for a value that cannot work."""

    learner: str = "lightgbm"
    features: str = "bands"  # lib.data.features kind
    n_bands: int = 4
    n_estimators: int = 300  # boosting rounds
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_data_in_leaf: int = 10
    feature_fraction: float = 0.3
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    C: float = 0.2
    hidden: tuple[int, ...] = (256,)
    activation: str = "gelu"
    dropout: float = 0.2
    mlp_epochs: int = 60
    mlp_lr: float = 1e-3
    mlp_weight_decay: float = 0.01
    mlp_batch_size: int = 32
    n_seeds: int = 1
    threads: int = 0  # LightGBM, BLAS and torch threads (0: the libraries' defaults)

    def __post_init__(self):
        if self.learner not in LEARNERS:
            raise ValueError(f"learner (backbone) must be one of {LEARNERS}, got "
                             f"{self.learner!r}")
        if self.features not in FEATURE_KINDS:
            raise ValueError(f"features must be one of {FEATURE_KINDS}, got {self.features!r}")
        if self.learner == "logistic" and self.features not in NON_NEGATIVE_KINDS:
            raise ValueError(f"features {self.features!r} has negative values; the logistic "
                             f"regression takes log10 of {NON_NEGATIVE_KINDS}")
        if not _whole(self.n_bands) or self.n_bands < 1:
            raise ValueError(f"n_bands must be a whole number of at least 1, got "
                             f"{self.n_bands!r}")
        if self.n_estimators < 1:
            raise ValueError(f"n_estimators must be at least 1, got {self.n_estimators}")
        if not (0 < self.feature_fraction <= 1 and 0 < self.bagging_fraction <= 1):
            raise ValueError("feature_fraction and bagging_fraction must be in (0, 1]")
        if self.C <= 0:
            raise ValueError(f"C must be positive, got {self.C}")
        hidden = self.hidden if isinstance(self.hidden, (list, tuple)) else None
        if not hidden or not all(_whole(h) and h >= 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty list of layer widths, each at least "
                             f"1, got {self.hidden!r}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("mlp_epochs", "mlp_batch_size", "n_seeds"):
            value = getattr(self, name)
            if not _whole(value) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
        if not self.mlp_lr > 0:
            raise ValueError(f"mlp_lr must be positive, got {self.mlp_lr}")
        if not self.mlp_weight_decay >= 0:
            raise ValueError(f"mlp_weight_decay must be at least 0, got {self.mlp_weight_decay}")
        if not _whole(self.threads) or self.threads < 0:
            raise ValueError(f"threads must be a whole number of at least 0, got "
                             f"{self.threads!r}")


def feature_settings(parameters: dict) -> FeatureSettings:
    """FeatureSettings from a 03b run's parameters ({name: value}: ``backbone`` is the
    learner; every other FeatureSettings field found there is taken, the rest keep their
    defaults). ValueError naming the parameter, as FeatureSettings gives it."""
    names = {f.name for f in fields(FeatureSettings)} - {"learner"}
    return FeatureSettings(learner=parameters.get("backbone", FeatureSettings.learner),
                           **{k: v for k, v in parameters.items() if k in names})


def check_run_parameters(values: dict) -> None:
    """ValueError naming the parameter when 03b_train_features' parameters ``values`` (its
    defaults overlaid with a params file, plan entry and overrides) cannot fit: the learner
    (``backbone``) and FeatureSettings' checks, and n_bands against t_bins. What the sweep
    checks before any run starts (lib.runs.plans.check_runs)."""
    feature_settings(values)
    if not values["n_bands"] <= values["t_bins"]:
        raise ValueError(f"n_bands must be in 1..t_bins ({values['t_bins']}), got "
                         f"{values['n_bands']}")


def _whole(value) -> bool:
    """True for an int (bool excluded)."""
    return isinstance(value, int) and not isinstance(value, bool)

"""The settings of one feature-model fit (03b_train_features), checked when they are made.

Kept apart from lib.models.feature_models (LightGBM, scikit-learn, torch) so that lib.sweep can
check a plan's 03b parameters before it launches anything, without importing those libraries.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from lib.core.checks import check_number
from lib.core.families import LEARNERS
from lib.data.features import FEATURE_KINDS

ACTIVATIONS = ("gelu", "relu")
NORMS = ("layer", "batch")  # the MLP's normalisation after each hidden Linear (lib.models.mlp)
OPTIMIZERS = ("adamw", "sgd")
# What each numeric setting must be (lib.core.checks.check_number): checked when the settings
# are made, so that 03b and a sweep refuse a value (also "abc", inf or nan) naming it.
NUMBER_BOUNDS = {
    "n_bands": dict(whole=True, minimum=1), "n_estimators": dict(whole=True, minimum=1),
    "learning_rate": dict(above=0), "num_leaves": dict(whole=True, minimum=2),
    "min_data_in_leaf": dict(whole=True, minimum=0), "feature_fraction": dict(above=0, maximum=1),
    "bagging_fraction": dict(above=0, maximum=1), "lambda_l2": dict(minimum=0),
    "C": dict(above=0), "dropout": dict(minimum=0, below=1),
    "mlp_epochs": dict(whole=True, minimum=1), "mlp_lr": dict(above=0),
    "mlp_weight_decay": dict(minimum=0), "mlp_batch_size": dict(whole=True, minimum=1),
    "n_seeds": dict(whole=True, minimum=1), "threads": dict(whole=True, minimum=0)}
NON_NEGATIVE_KINDS = ("bands", "benchmark")  # kinds the logistic regression's log10 can take
STRETCH_BOUNDS = dict(minimum=0.5, maximum=2)  # each factor of time_stretch


@dataclass(frozen=True)
class FeatureSettings:
    """Every knob of one feature-model fit. The LightGBM ones are LightGBM's own parameter
    names; ``C`` is the logistic regression's inverse L2 strength (on standardised features);
    the MLP's are ``hidden`` (widths of its hidden layers), ``activation``, ``dropout``,
    ``mlp_epochs`` (a fixed number: nothing looks at the OOF fold), ``mlp_lr`` and
    ``mlp_weight_decay`` (cosine decay to 0 over the epochs), ``mlp_batch_size``, ``n_seeds``
    (networks of different seeds averaged, logit mean), ``norm`` (after each hidden Linear:
    "layer" norm, or "batch" norm after the activation as in the 3rd place's network),
    ``optimizer`` ("adamw", or "sgd" with momentum 0.9) and ``standardise`` (False: the
    network takes the features as they are, for kinds bounded in [0, 1]). ``time_stretch``:
    factors (each in 0.5..2, not 1, no repeats; kept sorted) by which each training sample's
    time axis is stretched into one more copy per factor (lib.data.features.
    with_stretched_copies; an epoch is then one pass over every copy, and for LightGBM and the
    logistic regression the copies count as samples in min_data_in_leaf and C's loss);
    predictions see the samples as they are.
    ValueError naming the parameter for a value that cannot work."""

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
    norm: str = "layer"
    optimizer: str = "adamw"
    standardise: bool = True
    time_stretch: tuple[float, ...] = ()
    threads: int = 0  # LightGBM, BLAS and torch threads (0: the libraries' defaults)

    def __post_init__(self):
        if self.learner not in LEARNERS:
            raise ValueError(f"learner (backbone) must be one of {LEARNERS}, got "
                             f"{self.learner!r}")
        if self.features not in FEATURE_KINDS:
            raise ValueError(f"features must be one of {FEATURE_KINDS}, got {self.features!r}")
        if self.learner == "logistic" and self.features not in NON_NEGATIVE_KINDS:
            raise ValueError(f"features {self.features!r} is not for the logistic regression, "
                             f"which takes log10 of the band kinds {NON_NEGATIVE_KINDS} only")
        for name, bounds in NUMBER_BOUNDS.items():
            check_number(name, getattr(self, name), **bounds)
        hidden = self.hidden if isinstance(self.hidden, (list, tuple)) else None
        if not hidden or not all(_whole(h) and h >= 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty list of layer widths, each at least "
                             f"1, got {self.hidden!r}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not isinstance(self.standardise, bool):
            raise ValueError(f"standardise must be true or false, got {self.standardise!r}")
        self._check_time_stretch()

    def _check_time_stretch(self) -> None:
        stretch = self.time_stretch
        if not isinstance(stretch, (list, tuple)):
            raise ValueError(f"time_stretch must be a list of factors, got {stretch!r}")
        for factor in stretch:
            check_number("each factor of time_stretch", factor, **STRETCH_BOUNDS)
        if 1 in stretch or len(set(stretch)) < len(stretch):
            raise ValueError(f"time_stretch must not repeat a factor or hold 1 (the samples "
                             f"as they are are always in), got {list(stretch)!r}")
        object.__setattr__(self, "time_stretch", tuple(sorted(float(f) for f in stretch)))


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

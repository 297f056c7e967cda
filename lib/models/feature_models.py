"""The feature-based family: per label, a gradient-boosting model (LightGBM) or a regularised
logistic regression on lib.data.features statistics, or one small neural network (MLP) for all nine
labels, fitted on one fold (03b_train_features).

Shapes: features (n, F) float32; labels (n, 9) 0/1; logits (n, 9) float32. The logits go
into the ensemble like a CNN run's. There is no early stopping: the number of boosting rounds
and of MLP epochs are settings, so nothing looks at the OOF fold while fitting. A fitted model
is plain data (LightGBM's own text format per label, the logistic regression's standardisation
and coefficients, or the MLP's standardisation, architecture and float32 weights as base64
text) saved as one JSON file, so loading it never unpickles anything.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import lightgbm
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from lib.core.logits import to_logits
from lib.core.schema import N_LABELS
from lib.models.feature_settings import NON_NEGATIVE_KINDS, FeatureSettings
from lib.models.mlp import load_network, network_seed, torch_threads, train_mlp

LOG_FLOOR = 1e-4  # the logistic regression sees log10(feature + LOG_FLOOR), standardised


@dataclass
class FeatureModel:
    """A fitted model. LightGBM and logistic: one entry per label in ``per_label`` (9), each
    {"constant": logit} (the label had one class in training), {"lightgbm": model text} or
    {"coef": (F,) list, "intercept": float}. MLP: ``per_label`` is empty, ``architecture`` is
    {"hidden": [widths], "activation": name, "log_inputs": bool, "norm": "layer" or "batch"
    (absent in files written before it: "layer")} and ``networks`` holds one
    state dict per seed ({parameter name: float32 array}, see mlp_shapes); its logit is their
    mean. ``center``/``scale`` (F,): the standardisation of the learner's inputs (logistic:
    log10(features + 1e-4); MLP: the same when log_inputs, which it is for the non-negative
    kinds bands and benchmark, else the features themselves: mass_stats are log-scaled
    already); center 0 and scale 1 when the settings say not to standardise. ``config``: what
    the features were (kind, n_bands, m_bins, t_bins, ...), for predicting new images the same
    way."""

    learner: str
    config: dict
    per_label: list[dict]
    center: np.ndarray | None = None
    scale: np.ndarray | None = None
    architecture: dict | None = None
    networks: list[dict[str, np.ndarray]] | None = None
    # the MLP's networks as torch modules, built from ``networks`` once (mlp_networks)
    modules: list | None = field(default=None, repr=False, compare=False)


def lightgbm_params(settings: FeatureSettings, seed: int) -> dict:
    """LightGBM parameters of a binary per-label model; deterministic for a seed."""
    return dict(objective="binary", learning_rate=settings.learning_rate,
                num_leaves=settings.num_leaves, min_data_in_leaf=settings.min_data_in_leaf,
                feature_fraction=settings.feature_fraction,
                bagging_fraction=settings.bagging_fraction,
                bagging_freq=1 if settings.bagging_fraction < 1 else 0,
                lambda_l2=settings.lambda_l2, seed=seed, deterministic=True,
                force_row_wise=True, num_threads=settings.threads, verbosity=-1)


def log_features(features: np.ndarray) -> np.ndarray:
    """(n, F) non-negative features -> log10(features + 1e-4), float64 (the logistic
    regression's view: intensities span decades)."""
    return np.log10(np.asarray(features, dtype=np.float64) + LOG_FLOOR)


def mlp_networks(model: FeatureModel) -> list[torch.nn.Sequential]:
    """The networks of an MLP FeatureModel, in eval mode on the CPU (their mean logit is the
    model's), built from its state dicts on the first call and kept on the model (06's
    occlusion predicts with one model hundreds of times)."""
    if model.modules is None:
        model.modules = [load_network(state, len(model.center), model.architecture)
                         for state in model.networks]
    return model.modules


def mlp_values(features: np.ndarray, log_inputs: bool) -> np.ndarray:
    """(n, F) features -> what the MLP standardises, float64: log_features when
    ``log_inputs``, else the features as they are."""
    return log_features(features) if log_inputs else np.asarray(features, dtype=np.float64)


def standardisation(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(center, scale), (F,) each, of (n, F) training values: their mean and standard
    deviation, a scale of 0 (a constant feature) replaced by 1 so that it stays 0 once
    centred."""
    center, scale = values.mean(axis=0), values.std(axis=0)
    scale[scale == 0] = 1.0
    return center, scale


def standardise(values: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(values - center) / scale in float64, as float32 (the MLP's inputs)."""
    return ((np.asarray(values, dtype=np.float64) - center) / scale).astype(np.float32)


def fit_feature_model(features: np.ndarray, labels: np.ndarray, settings: FeatureSettings, *,
                      seed: int, config: dict | None = None) -> FeatureModel:
    """Fit one model per label on the training rows.

    features: (n, F) from lib.data.features.image_features; labels: (n, 9) 0/1. ``seed`` seeds
    LightGBM's bagging and feature sampling, and the MLP's networks (network k of n_seeds:
    network_seed(seed, k)); the logistic regression is deterministic. The MLP is one network
    for the nine labels on standardised features (see train_mlp). ``config`` (JSON-able) is
    kept with the model. Returns a FeatureModel.
    """
    labels = np.asarray(labels, dtype=np.float64)
    if len(features) != len(labels) or labels.shape[1:] != (N_LABELS,):
        raise ValueError(f"features {np.shape(features)} and labels {labels.shape} do not "
                         f"match (n, F) and (n, {N_LABELS})")
    if settings.learner == "mlp":
        return _fit_mlp(np.asarray(features), labels, settings, seed=seed, config=config)
    center = scale = None
    if settings.learner == "logistic":
        logged = log_features(features)
        center, scale = standardisation(logged)
        inputs = (logged - center) / scale
    else:
        inputs = np.asarray(features, dtype=np.float32)
    per_label = []
    for j in range(N_LABELS):
        y = labels[:, j]
        if y.min() == y.max():
            per_label.append({"constant": float(to_logits(y.mean()))})
        elif settings.learner == "logistic":
            with threadpool_limits(limits=settings.threads or None):
                fitted = LogisticRegression(C=settings.C, max_iter=5000).fit(inputs, y)
            per_label.append({"coef": fitted.coef_[0].tolist(),
                              "intercept": float(fitted.intercept_[0])})
        else:
            booster = lightgbm.train(lightgbm_params(settings, seed),
                                     lightgbm.Dataset(inputs, y),
                                     num_boost_round=settings.n_estimators)
            per_label.append({"lightgbm": booster.model_to_string()})
    return FeatureModel(settings.learner, dict(config or {}), per_label, center, scale)


def _fit_mlp(features: np.ndarray, labels: np.ndarray, settings: FeatureSettings, *, seed: int,
             config: dict | None) -> FeatureModel:
    """fit_feature_model for the MLP: standardise (or not: center 0, scale 1), then n_seeds
    networks (train_mlp)."""
    log_inputs = settings.features in NON_NEGATIVE_KINDS
    values = mlp_values(features, log_inputs)
    if settings.standardise:
        center, scale = standardisation(values)
    else:
        center, scale = np.zeros(values.shape[1]), np.ones(values.shape[1])
    inputs = torch.from_numpy(standardise(values, center, scale))
    targets = torch.from_numpy(labels.astype(np.float32))
    with torch_threads(settings.threads):
        networks = [train_mlp(inputs, targets, settings, seed=network_seed(seed, k))
                    for k in range(settings.n_seeds)]
    architecture = dict(hidden=list(settings.hidden), activation=settings.activation,
                        log_inputs=log_inputs, norm=settings.norm)
    return FeatureModel("mlp", dict(config or {}), [], center, scale, architecture, networks)


def model_inputs(model: FeatureModel, features: np.ndarray) -> np.ndarray:
    """(n, F) features as ``model``'s learner sees them: the logistic regression's
    standardised log10(features + 1e-4) (float64), the MLP's standardised features or their
    log10 (float32, see FeatureModel), LightGBM's raw features (float32)."""
    if model.learner == "logistic":
        return (log_features(features) - model.center) / model.scale
    if model.learner == "mlp":
        values = mlp_values(features, model.architecture["log_inputs"])
        return standardise(values, model.center, model.scale)
    return np.asarray(features, dtype=np.float32)


@functools.lru_cache(maxsize=256)
def parsed_booster(model_str: str) -> lightgbm.Booster:
    """The LightGBM booster of a model file's per-label text, parsed once per text (kept for
    the process): occlusion (lib.explain) predicts each fold model hundreds of times, and
    parsing 300 trees costs about a quarter of predicting a 32-row batch with them (5 against
    18 ms per label, 2-core CPU under load, 2026-12-03)."""
    return lightgbm.Booster(model_str=model_str)


def predict_feature_logits(model: FeatureModel, features: np.ndarray) -> np.ndarray:
    """(n, F) features -> (n, 9) float32 logits of ``model``."""
    features = np.asarray(features)
    inputs = model_inputs(model, features)
    if model.learner == "mlp":
        with torch.no_grad():
            x = torch.from_numpy(inputs)
            logits = torch.stack([net(x) for net in mlp_networks(model)]).mean(dim=0)
        return logits.numpy().astype(np.float32)
    logits = np.zeros((len(features), N_LABELS))
    for j, entry in enumerate(model.per_label):
        if "constant" in entry:
            logits[:, j] = entry["constant"]
        elif "coef" in entry:
            logits[:, j] = inputs @ np.asarray(entry["coef"]) + entry["intercept"]
        else:
            logits[:, j] = parsed_booster(entry["lightgbm"]).predict(inputs, raw_score=True)
    return logits.astype(np.float32)

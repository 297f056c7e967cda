"""The feature-based family: per label, a gradient-boosting model (LightGBM) or a regularised
logistic regression on lib.features statistics, fitted on one fold (03b_train_features).

Shapes: features (n, F) float32; labels (n, 9) 0/1; logits (n, 9) float32. The logits go
into the ensemble like a CNN run's. There is no early stopping: the number of boosting rounds
is a setting, so nothing looks at the OOF fold while fitting. A fitted model is plain data
(LightGBM's own text format per label, or the logistic regression's standardisation and
coefficients) saved as JSON, so loading it never unpickles anything.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import lightgbm
import numpy as np
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from lib.ensemble import to_logits
from lib.features import FEATURE_KINDS, n_features
from lib.files import atomic_write_text
from lib.schema import LABELS, N_LABELS

LEARNERS = ("lightgbm", "logistic")
FEATURE_MODEL = "feature_model.json"  # the model file of a feature run's folder
FORMAT = "mars-gcms feature model v1"
LOG_FLOOR = 1e-4  # the logistic regression sees log10(feature + LOG_FLOOR), standardised


@dataclass(frozen=True)
class FeatureSettings:
    """Every knob of one feature-model fit. The LightGBM ones are LightGBM's own parameter
    names; ``C`` is the logistic regression's inverse L2 strength (on standardised features)."""

    learner: str = "lightgbm"
    features: str = "bands"  # lib.features kind
    n_bands: int = 4
    n_estimators: int = 300  # boosting rounds
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_data_in_leaf: int = 10
    feature_fraction: float = 0.3
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    C: float = 0.2
    threads: int = 0  # LightGBM and BLAS threads (0: the libraries' defaults, OMP_NUM_THREADS)

    def __post_init__(self):
        if self.learner not in LEARNERS:
            raise ValueError(f"learner must be one of {LEARNERS}, got {self.learner!r}")
        if self.features not in FEATURE_KINDS:
            raise ValueError(f"features must be one of {FEATURE_KINDS}, got {self.features!r}")
        if self.n_estimators < 1:
            raise ValueError(f"n_estimators must be at least 1, got {self.n_estimators}")
        if not (0 < self.feature_fraction <= 1 and 0 < self.bagging_fraction <= 1):
            raise ValueError("feature_fraction and bagging_fraction must be in (0, 1]")
        if self.C <= 0:
            raise ValueError(f"C must be positive, got {self.C}")


@dataclass
class FeatureModel:
    """A fitted model: one entry per label in ``per_label`` (9), each {"constant": logit} (the
    label had one class in training), {"lightgbm": model text} or {"coef": (F,) list,
    "intercept": float}. ``center``/``scale`` (F,): the logistic regression's standardisation
    of log10(features + 1e-4). ``config``: what the features were (kind, n_bands, m_bins,
    t_bins, ...), for predicting new images the same way."""

    learner: str
    config: dict
    per_label: list[dict]
    center: np.ndarray | None = None
    scale: np.ndarray | None = None


# ---- pure pieces ---------------------------------------------------------------------------

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


# ---- fit and predict -------------------------------------------------------------------------

def fit_feature_model(features: np.ndarray, labels: np.ndarray, settings: FeatureSettings, *,
                      seed: int, config: dict | None = None) -> FeatureModel:
    """Fit one model per label on the training rows.

    features: (n, F) from lib.features.image_features; labels: (n, 9) 0/1. ``seed`` seeds
    LightGBM's bagging and feature sampling (the logistic regression is deterministic).
    ``config`` (JSON-able) is kept with the model. Returns a FeatureModel.
    """
    labels = np.asarray(labels, dtype=np.float64)
    if len(features) != len(labels) or labels.shape[1:] != (N_LABELS,):
        raise ValueError(f"features {np.shape(features)} and labels {labels.shape} do not "
                         f"match (n, F) and (n, {N_LABELS})")
    center = scale = None
    if settings.learner == "logistic":
        logged = log_features(features)
        center, scale = logged.mean(axis=0), logged.std(axis=0)
        scale[scale == 0] = 1.0  # constant features stay 0 after centring
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


def model_inputs(model: FeatureModel, features: np.ndarray) -> np.ndarray:
    """(n, F) features as ``model``'s learner sees them: the logistic regression's
    standardised log10(features + 1e-4) (float64), LightGBM's raw features (float32)."""
    if model.learner == "logistic":
        return (log_features(features) - model.center) / model.scale
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
    logits = np.zeros((len(features), N_LABELS))
    for j, entry in enumerate(model.per_label):
        if "constant" in entry:
            logits[:, j] = entry["constant"]
        elif "coef" in entry:
            logits[:, j] = inputs @ np.asarray(entry["coef"]) + entry["intercept"]
        else:
            logits[:, j] = parsed_booster(entry["lightgbm"]).predict(inputs, raw_score=True)
    return logits.astype(np.float32)


# ---- the model file ------------------------------------------------------------------------

def save_feature_model(path: str | Path, model: FeatureModel) -> Path:
    """The model as one JSON file (atomically); read it back with load_feature_model."""
    payload = dict(format=FORMAT, learner=model.learner, labels=list(LABELS), config=model.config,
                   center=None if model.center is None else model.center.tolist(),
                   scale=None if model.scale is None else model.scale.tolist(),
                   per_label=model.per_label)
    return atomic_write_text(path, json.dumps(payload))


class ModelFileError(ValueError):
    """A feature model file that cannot be used: missing, not JSON, or not a consistent model
    (schema, shapes, labels). The message names the file and the problem."""


def load_feature_model(path: str | Path) -> FeatureModel:
    """A FeatureModel written by save_feature_model, checked before use (check_model_payload):
    ModelFileError naming the file when it is missing, truncated or inconsistent."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelFileError(f"{path}: feature model file not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ModelFileError(f"{path}: not readable as JSON ({error}); the file is truncated "
                             f"or damaged: train the run again") from None
    problem = check_model_payload(payload)
    if problem:
        raise ModelFileError(f"{path}: {problem}; the file is damaged or from elsewhere: "
                             f"train the run again")
    center, scale = (None if payload[key] is None else np.asarray(payload[key], dtype=float)
                     for key in ("center", "scale"))
    return FeatureModel(payload["learner"], payload["config"], payload["per_label"], center,
                        scale)


def check_model_payload(payload) -> str | None:
    """What is wrong with a decoded model file, or None. Checked: the format; the learner (one
    of LEARNERS, the config's if it names one); one entry per label (9, and the labels LABELS
    when the file lists them), each of the learner's kind ({"constant"} or {"coef",
    "intercept"} / {"lightgbm"}) with finite numbers; F, the number of features, is the same
    for the coefficients, the standardisation (center, scale > 0; logistic only), LightGBM's
    max_feature_idx + 1, the config's feature_names and what its features / m_bins / n_bands
    give (lib.features.n_features)."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        return f"not a feature model file ({FORMAT})"
    missing = [k for k in ("learner", "config", "per_label", "center", "scale")
               if k not in payload]
    if missing:
        return f"keys {missing} missing"
    learner, config, per_label = payload["learner"], payload["config"], payload["per_label"]
    if learner not in LEARNERS:
        return f"learner {learner!r} is not one of {LEARNERS}"
    if not isinstance(config, dict):
        return "config is not a mapping"
    if "learner" in config and config["learner"] != learner:
        return f"learner {learner!r} differs from the config's {config['learner']!r}"
    if payload.get("labels", list(LABELS)) != list(LABELS):
        return f"labels {payload['labels']} are not {list(LABELS)}"
    if not isinstance(per_label, list) or len(per_label) != N_LABELS:
        return (f"per_label has {len(per_label) if isinstance(per_label, list) else 'no'} "
                f"entries, expected one per label ({N_LABELS})")
    widths = {}  # where a feature count comes from -> F
    for label, entry in zip(LABELS, per_label):
        kind = _entry_problem(entry, learner)
        if kind:
            return f"per_label entry of {label}: {kind}"
        if "coef" in entry:
            widths[f"{label}'s coefficients"] = len(entry["coef"])
        if "lightgbm" in entry:
            widths[f"{label}'s LightGBM model"] = _lightgbm_width(entry["lightgbm"])
    for key in ("center", "scale"):
        values = payload[key]
        if learner == "lightgbm":
            if values is not None:
                return f"{key} is given, but a LightGBM model uses raw features"
            continue
        if not _finite_numbers(values) or (key == "scale" and min(values, default=1) <= 0):
            return f"{key} is not a list of finite numbers" + (" > 0" if key == "scale" else "")
        widths[key] = len(values)
    if isinstance(config.get("feature_names"), list):
        widths["config's feature_names"] = len(config["feature_names"])
    kind, m_bins, n_bands = (config.get(k) for k in ("features", "m_bins", "n_bands"))
    if kind is not None or m_bins is not None:
        try:
            widths[f"features {kind!r} of {m_bins} masses x {n_bands} bands"] = n_features(
                kind, int(m_bins), int(n_bands))
        except (TypeError, ValueError) as error:
            return f"config's features, m_bins, n_bands ({kind!r}, {m_bins!r}, {n_bands!r}) " \
                   f"do not describe features: {error}"
    if len(set(widths.values())) > 1:
        first_of = {}  # one source per distinct count
        for source, width in widths.items():
            first_of.setdefault(width, source)
        return "feature counts differ: " + ", ".join(f"{k} {v}" for v, k in first_of.items())
    return None


def _entry_problem(entry, learner: str) -> str | None:
    """What is wrong with one per_label entry of a ``learner`` model, or None."""
    if not isinstance(entry, dict):
        return "not a mapping"
    if set(entry) == {"constant"}:
        return None if _finite_numbers([entry["constant"]]) else "constant is not a finite number"
    if learner == "logistic":
        if set(entry) != {"coef", "intercept"}:
            return f"keys {sorted(entry)}, expected constant or coef + intercept (logistic)"
        if not (_finite_numbers(entry["coef"]) and _finite_numbers([entry["intercept"]])):
            return "coef or intercept is not finite numbers"
        return None
    if set(entry) != {"lightgbm"} or not isinstance(entry["lightgbm"], str):
        return f"keys {sorted(entry)}, expected constant or lightgbm (a model text)"
    if _lightgbm_width(entry["lightgbm"]) is None:
        return "the LightGBM model text has no max_feature_idx line"
    return None


def _lightgbm_width(model_text: str) -> int | None:
    """The number of features a LightGBM text model was trained on (max_feature_idx + 1)."""
    found = re.search(r"^max_feature_idx=(\d+)$", model_text[:4096], flags=re.MULTILINE)
    return int(found.group(1)) + 1 if found else None


def _finite_numbers(values) -> bool:
    """True for a list of finite int/float values (bool excluded)."""
    return isinstance(values, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
        for v in values)

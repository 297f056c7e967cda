"""The feature-based family: per label, a gradient-boosting model (LightGBM) or a regularised
logistic regression on lib.features statistics, or one small neural network (MLP) for all nine
labels, fitted on one fold (03b_train_features).

Shapes: features (n, F) float32; labels (n, 9) 0/1; logits (n, 9) float32. The logits go
into the ensemble like a CNN run's. There is no early stopping: the number of boosting rounds
and of MLP epochs are settings, so nothing looks at the OOF fold while fitting. A fitted model
is plain data (LightGBM's own text format per label, the logistic regression's standardisation
and coefficients, or the MLP's standardisation, architecture and float32 weights as base64
text) saved as one JSON file, so loading it never unpickles anything.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from lib.ensemble import to_logits
from lib.feature_settings import ACTIVATIONS, LEARNERS, NON_NEGATIVE_KINDS, FeatureSettings
from lib.features import n_features
from lib.files import atomic_write_text
from lib.schema import LABELS, N_LABELS

FEATURE_MODEL = "feature_model.json"  # the model file of a feature run's folder
FORMAT = "mars-gcms feature model v1"
LOG_FLOOR = 1e-4  # the logistic regression sees log10(feature + LOG_FLOOR), standardised


@dataclass
class FeatureModel:
    """A fitted model. LightGBM and logistic: one entry per label in ``per_label`` (9), each
    {"constant": logit} (the label had one class in training), {"lightgbm": model text} or
    {"coef": (F,) list, "intercept": float}. MLP: ``per_label`` is empty, ``architecture`` is
    {"hidden": [widths], "activation": name, "log_inputs": bool} and ``networks`` holds one
    state dict per seed ({parameter name: float32 array}, see mlp_shapes); its logit is their
    mean. ``center``/``scale`` (F,): the standardisation of the learner's inputs (logistic:
    log10(features + 1e-4); MLP: the same when log_inputs, which it is for the non-negative
    kinds bands and benchmark, else the features themselves: mass_stats are log-scaled
    already). ``config``: what the features were
    (kind, n_bands, m_bins, t_bins, ...), for predicting new images the same way."""

    learner: str
    config: dict
    per_label: list[dict]
    center: np.ndarray | None = None
    scale: np.ndarray | None = None
    architecture: dict | None = None
    networks: list[dict[str, np.ndarray]] | None = None
    # the MLP's networks as torch modules, built from ``networks`` once (mlp_networks)
    modules: list | None = field(default=None, repr=False, compare=False)


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


def mlp_shapes(width: int, hidden: list[int]) -> dict[str, tuple[int, ...]]:
    """{parameter name: shape} of build_mlp(width, hidden): per hidden layer k a Linear
    (``{4k}.weight`` (h, previous), ``{4k}.bias``) and a LayerNorm (``{4k+1}.weight``,
    ``{4k+1}.bias``, (h,)), then the output Linear ``{4K}`` to the 9 logits."""
    shapes, previous = {}, width
    for k, size in enumerate(hidden):
        shapes |= {f"{4 * k}.weight": (size, previous), f"{4 * k}.bias": (size,),
                   f"{4 * k + 1}.weight": (size,), f"{4 * k + 1}.bias": (size,)}
        previous = size
    return shapes | {f"{4 * len(hidden)}.weight": (N_LABELS, previous),
                     f"{4 * len(hidden)}.bias": (N_LABELS,)}


def build_mlp(width: int, hidden: list[int], activation: str = "gelu",
              dropout: float = 0.0) -> torch.nn.Sequential:
    """(n, width) standardised features -> (n, 9) logits: per hidden width h, Linear ->
    LayerNorm -> activation (gelu or relu) -> Dropout, then a Linear to the 9 logits."""
    layers, previous = [], width
    for size in hidden:
        layers += [torch.nn.Linear(previous, size), torch.nn.LayerNorm(size),
                   torch.nn.GELU() if activation == "gelu" else torch.nn.ReLU(),
                   torch.nn.Dropout(dropout)]
        previous = size
    return torch.nn.Sequential(*layers, torch.nn.Linear(previous, N_LABELS))


def mlp_networks(model: FeatureModel) -> list[torch.nn.Sequential]:
    """The networks of an MLP FeatureModel, in eval mode on the CPU (their mean logit is the
    model's), built from its state dicts on the first call and kept on the model (06's
    occlusion predicts with one model hundreds of times)."""
    if model.modules is None:
        model.modules = []
        for state in model.networks:
            net = build_mlp(len(model.center), model.architecture["hidden"],
                            model.architecture["activation"])
            net.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32))
                                 for k, v in state.items()})
            model.modules.append(net.eval())
    return model.modules


@contextmanager
def torch_threads(threads: int):
    """torch's intra-op threads set to ``threads`` inside the block (0: left as they are)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def network_seed(seed: int, k: int) -> int:
    """The seed of the k-th network of a run of ``seed``: distinct across (seed, k) pairs, so
    runs of neighbouring seeds share no network."""
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def train_mlp(inputs: torch.Tensor, labels: torch.Tensor, settings: FeatureSettings, *,
              seed: int) -> dict[str, np.ndarray]:
    """One network fitted on standardised inputs (n, F) float32 and labels (n, 9) float32:
    BCE on the logits, AdamW, ``mlp_epochs`` epochs of shuffled batches with the learning
    rate decaying to 0 on a cosine. Deterministic for a seed (and a number of threads).
    Returns its state dict as float32 arrays."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # initial weights and dropout masks
        net = build_mlp(inputs.shape[1], settings.hidden, settings.activation, settings.dropout)
        optimizer = torch.optim.AdamW(net.parameters(), lr=settings.mlp_lr,
                                      weight_decay=settings.mlp_weight_decay)
        batches = math.ceil(len(inputs) / settings.mlp_batch_size)
        total = settings.mlp_epochs * batches
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
        order = torch.Generator().manual_seed(seed)
        net.train()
        for _ in range(settings.mlp_epochs):
            for batch in torch.randperm(len(inputs), generator=order).split(
                    settings.mlp_batch_size):
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    net(inputs[batch]), labels[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
    return {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}


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


# ---- fit and predict -------------------------------------------------------------------------

def fit_feature_model(features: np.ndarray, labels: np.ndarray, settings: FeatureSettings, *,
                      seed: int, config: dict | None = None) -> FeatureModel:
    """Fit one model per label on the training rows.

    features: (n, F) from lib.features.image_features; labels: (n, 9) 0/1. ``seed`` seeds
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
    """fit_feature_model for the MLP: standardise, then n_seeds networks (train_mlp)."""
    log_inputs = settings.features in NON_NEGATIVE_KINDS
    values = mlp_values(features, log_inputs)
    center, scale = standardisation(values)
    inputs = torch.from_numpy(standardise(values, center, scale))
    targets = torch.from_numpy(labels.astype(np.float32))
    with torch_threads(settings.threads):
        networks = [train_mlp(inputs, targets, settings, seed=network_seed(seed, k))
                    for k in range(settings.n_seeds)]
    architecture = dict(hidden=list(settings.hidden), activation=settings.activation,
                        log_inputs=log_inputs)
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


# ---- the model file ------------------------------------------------------------------------

def save_feature_model(path: str | Path, model: FeatureModel) -> Path:
    """The model as one JSON file (atomically); read it back with load_feature_model."""
    payload = dict(format=FORMAT, learner=model.learner, labels=list(LABELS), config=model.config,
                   center=None if model.center is None else model.center.tolist(),
                   scale=None if model.scale is None else model.scale.tolist(),
                   per_label=model.per_label)
    if model.learner == "mlp":
        payload |= dict(architecture=model.architecture,
                        networks=[{k: _encode(v) for k, v in state.items()}
                                  for state in model.networks])
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
    networks = None
    if payload["learner"] == "mlp":
        networks = [{k: _decode(v) for k, v in state.items()} for state in payload["networks"]]
    return FeatureModel(payload["learner"], payload["config"], payload["per_label"], center,
                        scale, payload.get("architecture"), networks)


def check_model_payload(payload) -> str | None:
    """What is wrong with a decoded model file, or None. Checked: the format; the learner (one
    of LEARNERS, the config's if it names one); one entry per label (9, and the labels LABELS
    when the file lists them), each of the learner's kind ({"constant"} or {"coef",
    "intercept"} / {"lightgbm"}) with finite numbers; an MLP instead has no entries, an
    architecture (hidden widths >= 1, an activation of ACTIVATIONS) and at least one network,
    each with exactly the parameters of mlp_shapes, of those shapes, finite (their base64
    text decoded); F, the number of features, is the same for the coefficients, the
    standardisation (center, scale > 0; logistic and MLP), LightGBM's max_feature_idx + 1,
    the config's feature_names and what its features / m_bins / n_bands give
    (lib.features.n_features)."""
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
    if learner == "mlp":
        problem = _mlp_problem(payload)
        if problem:
            return problem
    elif not isinstance(per_label, list) or len(per_label) != N_LABELS:
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


def _mlp_problem(payload: dict) -> str | None:
    """What is wrong with an MLP payload's per_label, architecture and networks, or None."""
    if payload["per_label"] != []:
        return "per_label must be empty for an MLP (its networks give the nine logits)"
    architecture, networks = payload.get("architecture"), payload.get("networks")
    if not isinstance(architecture, dict) or set(architecture) != {
            "hidden", "activation", "log_inputs"}:
        return "architecture must be a mapping of hidden, activation and log_inputs"
    if not isinstance(architecture["log_inputs"], bool):
        return "architecture's log_inputs is not true or false"
    hidden = architecture["hidden"]
    if not (isinstance(hidden, list) and hidden and all(
            isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden)):
        return f"architecture's hidden {hidden!r} is not a list of widths >= 1"
    if architecture["activation"] not in ACTIVATIONS:
        return f"architecture's activation {architecture['activation']!r} is not one of " \
               f"{ACTIVATIONS}"
    if not isinstance(networks, list) or not networks:
        return "networks must be a non-empty list"
    if not isinstance(payload["center"], list):
        return "center is not a list of finite numbers"
    expected = mlp_shapes(len(payload["center"]), hidden)
    for k, state in enumerate(networks):
        if not isinstance(state, dict) or set(state) != set(expected):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            return f"network {k} has parameters {got}, expected {sorted(expected)}"
        for name, shape in expected.items():
            try:
                values = _decode(state[name])
            except ValueError as error:
                return f"network {k}'s {name}: {error}"
            if values.shape != shape:
                return f"network {k}'s {name} has shape {values.shape}, expected {shape} " \
                       f"(from {len(payload['center'])} features and hidden {hidden})"
            if not np.isfinite(values).all():
                return f"network {k}'s {name} is not finite"
    return None


def _encode(values: np.ndarray) -> dict:
    """A float32 array as JSON: {"shape": [...], "float32_base64": little-endian bytes}."""
    values = np.ascontiguousarray(values, dtype="<f4")
    return {"shape": list(values.shape),
            "float32_base64": base64.b64encode(values.tobytes()).decode("ascii")}


def _decode(entry) -> np.ndarray:
    """The float32 array of an _encode entry; ValueError saying what is wrong with it."""
    if not isinstance(entry, dict) or set(entry) != {"shape", "float32_base64"}:
        raise ValueError("not a {shape, float32_base64} mapping")
    shape, text = entry["shape"], entry["float32_base64"]
    if not (isinstance(shape, list) and all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise ValueError(f"shape {shape!r} is not a list of sizes")
    try:
        raw = base64.b64decode(text, validate=True) if isinstance(text, str) else None
    except (binascii.Error, ValueError):
        raw = None
    if raw is None:
        raise ValueError("float32_base64 is not base64 text")
    if len(raw) != 4 * math.prod(shape):
        raise ValueError(f"{len(raw)} bytes for shape {shape} ({4 * math.prod(shape)} expected)")
    return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)


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

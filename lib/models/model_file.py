"""A feature run's model file (feature_model.json): writing, reading and checking it."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from pathlib import Path

import numpy as np

from lib.core.files import atomic_write_text
from lib.core.schema import LABELS, N_LABELS
from lib.data.features import n_features
from lib.models.feature_models import FeatureModel
from lib.models.feature_settings import ACTIVATIONS, LEARNERS, NORMS
from lib.models.mlp import mlp_shapes

FORMAT = "mars-gcms feature model v1"


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
    architecture (hidden widths >= 1, an activation of ACTIVATIONS, a norm of NORMS) and at
    least one network, each with exactly the parameters of mlp_shapes, of those shapes,
    finite (their base64 text decoded); F, the number of features, is the same for the
    coefficients, the standardisation (center, scale > 0; logistic and MLP), LightGBM's
    max_feature_idx + 1, the config's feature_names and what its features / m_bins / n_bands
    (/ t_bins) give
    (lib.data.features.n_features)."""
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
    kind, m_bins, n_bands, t_bins = (config.get(k)
                                     for k in ("features", "m_bins", "n_bands", "t_bins"))
    if kind is not None or m_bins is not None:
        try:
            widths[f"features {kind!r} of {m_bins} masses x {n_bands} bands"] = n_features(
                kind, int(m_bins), int(n_bands), None if t_bins is None else int(t_bins))
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
    if not isinstance(architecture, dict) or set(architecture) - {"norm"} != {
            "hidden", "activation", "log_inputs"}:
        return "architecture must be a mapping of hidden, activation, log_inputs (and norm)"
    if not isinstance(architecture["log_inputs"], bool):
        return "architecture's log_inputs is not true or false"
    norm = architecture.get("norm", "layer")
    if norm not in NORMS:
        return f"architecture's norm {norm!r} is not one of {NORMS}"
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
    expected = mlp_shapes(len(payload["center"]), hidden, norm)
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

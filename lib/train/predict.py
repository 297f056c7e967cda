"""Predictions from finished runs, for any set of samples: a run folder holding a checkpoint
is a CNN (TTA forward), one holding a feature model file is a feature-based model."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lib.core.logits import sigmoid
from lib.core.precision import cuda_problem
from lib.data.features import CSV_KINDS, image_features
from lib.data.third_place import third_place_matrix
from lib.models.cnn import build_model
from lib.models.feature_models import FeatureModel, predict_feature_logits
from lib.models.model_file import load_feature_model
from lib.runs.run_folder import CHECKPOINT, FEATURE_MODEL, METRICS, is_done, model_key, read_metrics
from lib.train.checkpoint import (
    ModelMismatchError,
    check_model_identity,
    load_checkpoint,
    model_path,
)
from lib.train.device import DeviceImages, configure_backends, predict_logits
from lib.train.settings import TrainSettings

PRECISION_SETTINGS = {"bf16": dict(amp=True, tf32=False), "tf32": dict(amp=False, tf32=True),
                      "fp32": dict(amp=False, tf32=False)}


class DeviceError(RuntimeError):
    """The device asked for cannot be had; a run stops here instead of falling back."""


def pick_device(device: str = "auto") -> torch.device:
    """"auto": CUDA when usable, else CPU (interactive use). "cuda" or "cuda:N": that GPU, or
    DeviceError saying what was asked, on which host, and why it cannot be had; never a
    fallback. Anything else ("cpu", ...): the named device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    picked = torch.device(device)
    if picked.type == "cuda":
        problem = cuda_problem(picked.index, cuda_version=torch.version.cuda,
                               n_gpus=torch.cuda.device_count() if torch.cuda.is_available()
                               else 0, visible=os.environ.get("CUDA_VISIBLE_DEVICES"),
                               torch_version=torch.__version__)
        if problem:
            raise DeviceError(f"device {device!r} was asked for on {socket.gethostname()}, "
                              f"but {problem}")
    return picked


def run_precision(run_dir: Path) -> str:
    """The precision a finished run trained in (its metrics.json "precision": "bf16", "tf32"
    or "fp32"); "fp32" for runs that did not record one."""
    path = Path(run_dir) / METRICS
    recorded = read_metrics(run_dir).get("precision", "fp32") if path.is_file() else "fp32"
    if recorded not in PRECISION_SETTINGS:
        raise ValueError(f"{path}: unknown precision {recorded!r}, expected one of "
                         f"{list(PRECISION_SETTINGS)}")
    return recorded


def run_config(run_dir: Path) -> dict:
    """The config a finished run saved with its model (m_bins, t_bins and what it needs to
    predict), from its checkpoint or its feature model file."""
    run_dir = Path(run_dir)
    if (run_dir / CHECKPOINT).is_file():
        return load_checkpoint(run_dir / CHECKPOINT)[1]
    if (run_dir / FEATURE_MODEL).is_file():
        return load_feature_model(run_dir / FEATURE_MODEL).config
    raise FileNotFoundError(f"{run_dir}: holds neither {CHECKPOINT} nor {FEATURE_MODEL}")


def image_size(run_dirs: list[Path]) -> tuple[int, int]:
    """(m_bins, t_bins) of the images the finished runs in ``run_dirs`` need: those of the
    first run that reads the cached image. Feature models of a CSV kind read none, so runs of
    only such models give the first run's recorded size."""
    first = None
    for run_dir in run_dirs:
        config = run_config(run_dir)
        first = first or config
        if config.get("features") not in CSV_KINDS:
            return int(config["m_bins"]), int(config["t_bins"])
    if first is None:
        raise ValueError("no run folder to take the image size from")
    return int(first["m_bins"]), int(first["t_bins"])


def load_run_model(run_dir: Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The best checkpoint of a finished run as an eval-mode model, and its config;
    ModelMismatchError (lib.train.checkpoint) when the folder's model file is not the run's."""
    path = _finished_model(run_dir, CHECKPOINT)
    state, config = load_checkpoint(path)
    check_model_identity(path, config)
    model = build_model(config["backbone"], config["head"], m_bins=config["m_bins"])
    model.width_offsets = tuple(config["tta_offsets"])
    model.load_state_dict(state)
    return model.to(device).eval(), config


def load_run_feature_model(run_dir: Path) -> FeatureModel:
    """The feature model of a finished run, checked against its run folder
    (ModelMismatchError naming the file and the mismatch, see load_run_model)."""
    path = _finished_model(run_dir, FEATURE_MODEL)
    model = load_feature_model(path)
    check_model_identity(path, model.config)
    return model


def predict_runs(run_dirs: list[Path], images: np.ndarray, derivatized: np.ndarray, *,
                 device: torch.device, batch_size: int = 32,
                 paths: Sequence[str | Path] | None = None) -> dict[str, np.ndarray]:
    """Mean over each model's folds of the probabilities, per model (see model_key): TTA
    logits of the CNN runs, each in the precision it trained in (see run_precision; bf16
    and TF32 where the device has them), feature-model logits of the feature runs
    (lib.data.features of the same images; the kinds read from the CSVs, CSV_KINDS, from the
    sample files in ``paths``).

    images: (N, m, t) single-channel images (an image cache's ``images``); derivatized (N,);
    paths: (N,) the samples' CSV files, needed only by runs of a CSV kind. Returns
    {model key: (N, 9) float32 probabilities}. Every run must match the images' (m, t) size,
    except those of a CSV kind.
    """
    data = DeviceImages(images, derivatized, device)
    per_model: dict[str, list[np.ndarray]] = {}
    features: dict[tuple, np.ndarray] = {}  # (kind, n_bands) -> (N, F), computed once
    for run_dir in run_dirs:
        if model_path(run_dir).name == FEATURE_MODEL:
            logits = _feature_run_logits(Path(run_dir), images, derivatized, features, paths)
        else:
            logits = _cnn_run_logits(Path(run_dir), data, device, batch_size)
        per_model.setdefault(model_key(run_dir), []).append(sigmoid(logits))
    return {key: np.mean(probs, axis=0).astype(np.float32) for key, probs in per_model.items()}


def _cnn_run_logits(run_dir: Path, data: DeviceImages, device: torch.device,
                    batch_size: int) -> np.ndarray:
    model, config = load_run_model(run_dir, device)
    _check_size(run_dir, config, tuple(data.images.shape[1:]))
    settings = TrainSettings(norm=config["norm"], transform=config["transform"],
                             eval_batch_size=batch_size, channels_last=False,
                             **PRECISION_SETTINGS[run_precision(run_dir)])
    configure_backends(device, settings)
    return predict_logits(model, data, np.arange(len(data.images)), settings)


def _feature_run_logits(run_dir: Path, images: np.ndarray, derivatized: np.ndarray,
                        features: dict, paths: Sequence[str | Path] | None) -> np.ndarray:
    model = load_run_feature_model(run_dir)
    config = model.config
    key = (config["features"], config["n_bands"])
    if key[0] in CSV_KINDS:
        if paths is None or len(paths) != len(images):
            raise ValueError(f"{run_dir}: its {key[0]} features come from the sample CSVs; "
                             f"give predict_runs the {len(images)} samples' paths")
        if key not in features:
            features[key] = third_place_matrix(paths, derivatized, kind=key[0])
        return predict_feature_logits(model, features[key])
    _check_size(run_dir, config, images.shape[1:])
    if key not in features:
        features[key] = image_features(images, derivatized, kind=key[0], n_bands=key[1])[0]
    return predict_feature_logits(model, features[key])


def _check_size(run_dir: Path, config: dict, image_size: tuple) -> None:
    if (config["m_bins"], config["t_bins"]) != tuple(image_size):
        raise ValueError(f"{run_dir}: trained on {config['m_bins']}x{config['t_bins']} "
                         f"images, given {image_size[0]}x{image_size[1]}")


def _finished_model(run_dir: Path, wanted: str) -> Path:
    """The model file of a finished run, which must be ``wanted`` (CHECKPOINT or
    FEATURE_MODEL): FileNotFoundError without DONE, ModelMismatchError for the other kind."""
    run_dir = Path(run_dir)
    if not is_done(run_dir):
        raise FileNotFoundError(f"{run_dir}: not a finished run (no DONE file)")
    path = model_path(run_dir)
    if path.name != wanted:
        kinds = {CHECKPOINT: "a CNN checkpoint", FEATURE_MODEL: "a feature model"}
        raise ModelMismatchError(f"{path}: the run folder holds {kinds[path.name]}, not "
                                 f"{kinds[wanted]}")
    return path

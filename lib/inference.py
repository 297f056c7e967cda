"""TTA predictions from finished runs' checkpoints, for any set of samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lib.ensemble import sigmoid
from lib.models import build_model
from lib.runs import CHECKPOINT, is_done, load_checkpoint, model_key
from lib.training import DeviceImages, TrainSettings, predict_logits


def pick_device(device: str = "auto") -> torch.device:
    """"auto": CUDA when present, else CPU; otherwise the named device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_run_model(run_dir: Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The best checkpoint of a finished run as an eval-mode model, and its config."""
    run_dir = Path(run_dir)
    if not is_done(run_dir):
        raise FileNotFoundError(f"{run_dir}: not a finished run (no DONE file)")
    state, config = load_checkpoint(run_dir / CHECKPOINT)
    model = build_model(config["backbone"], config["head"], m_bins=config["m_bins"])
    model.width_offsets = tuple(config["tta_offsets"])
    model.load_state_dict(state)
    return model.to(device).eval(), config


def predict_runs(run_dirs: list[Path], images: np.ndarray, derivatized: np.ndarray, *,
                 device: torch.device, batch_size: int = 32, amp: bool = True
                 ) -> dict[str, np.ndarray]:
    """Mean over each model's folds of the TTA probabilities, per model (see model_key).

    images: (N, m, t) single-channel images (an image cache's ``images``); derivatized (N,).
    Returns {model key: (N, 9) float32 probabilities}. Every checkpoint must match the images'
    (m, t) size.
    """
    data = DeviceImages(images, derivatized, device)
    per_model: dict[str, list[np.ndarray]] = {}
    index = np.arange(len(images))
    for run_dir in run_dirs:
        model, config = load_run_model(run_dir, device)
        if (config["m_bins"], config["t_bins"]) != images.shape[1:]:
            raise ValueError(f"{run_dir}: trained on {config['m_bins']}x{config['t_bins']} "
                             f"images, given {images.shape[1]}x{images.shape[2]}")
        settings = TrainSettings(norm=config["norm"], transform=config["transform"],
                                 eval_batch_size=batch_size, amp=amp, channels_last=False)
        logits = predict_logits(model, data, index, settings)
        per_model.setdefault(model_key(run_dir), []).append(sigmoid(logits))
    return {key: np.mean(probs, axis=0).astype(np.float32) for key, probs in per_model.items()}


"""A run's model files: the CNN checkpoint (save, load with weights_only) and the check that a
finished run's model file loads as 04_predict would load it."""

from __future__ import annotations

from pathlib import Path

from lib.core.files import atomic_path
from lib.runs.run_folder import CHECKPOINT, FEATURE_MODEL


def save_checkpoint(path: Path, state_dict: dict, config: dict) -> None:
    """torch.save({"model": state_dict, "config": config}) atomically; loadable with
    weights_only=True (config holds only str, int, float, bool and lists of them)."""
    import torch  # imported where needed: sweeps and their workers read run folders without it

    with atomic_path(path) as partial:
        torch.save({"model": state_dict, "config": config}, partial)


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read; the message names the file."""


def load_checkpoint(path: Path, *, mmap: bool = False) -> tuple[dict, dict]:
    """(state_dict, config) of a checkpoint written by save_checkpoint; CheckpointError naming
    the file if it is missing, truncated or not one of ours. ``mmap``: the tensors are mapped,
    not read (a cheap check that the file loads)."""
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        return payload["model"], payload["config"]
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        reason = str(error).split("\n")[0].strip() or type(error).__name__
        if isinstance(error, KeyError) or "weights only" in reason.lower().replace("_", " "):
            reason = "not a checkpoint written by this project's 03_train"
        raise CheckpointError(f"{path}: cannot load the checkpoint ({reason}); the file is "
                              f"damaged or from elsewhere: train the run again") from None


def check_model_file(run_dir: Path) -> None:
    """Check that a finished run's model loads, as 04_predict would load it: its
    feature_model.json through lib.models.model_file.load_feature_model (ModelFileError, a
    ValueError), else its checkpoint.pt through load_checkpoint, memory-mapped so that the
    tensors are not read (CheckpointError for a missing, truncated or foreign file; damage
    inside a tensor's bytes is found only when the weights are used). ValueError when the
    folder holds neither."""
    from lib.models.model_file import load_feature_model  # LightGBM where needed

    run_dir = Path(run_dir)
    if (run_dir / FEATURE_MODEL).is_file():
        load_feature_model(run_dir / FEATURE_MODEL)
    elif (run_dir / CHECKPOINT).is_file():
        load_checkpoint(run_dir / CHECKPOINT, mmap=True)
    else:
        raise ValueError(f"{run_dir}: no model file ({CHECKPOINT} or {FEATURE_MODEL}): 04 "
                         f"could not predict with it")

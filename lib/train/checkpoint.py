"""A run's model files: the CNN checkpoint (save, load with weights_only), the check that a
finished run's model file loads as 04_predict would load it, and that it is the model of its
run folder (family, backbone, fold, seed, data: against metrics.json)."""

from __future__ import annotations

from pathlib import Path

from lib.core.files import atomic_path
from lib.runs.run_folder import CHECKPOINT, FEATURE_MODEL, METRICS, read_metrics


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


class ModelMismatchError(ValueError):
    """A run folder's model file is not the model of that run (another family, backbone,
    fold, seed or data), or the folder holds two model files; the message names the file and
    the mismatch."""


def model_path(run_dir: Path) -> Path:
    """The one model file of a run folder: its feature_model.json or its checkpoint.pt.
    ModelMismatchError when it holds both (which one is the run's?), ValueError when neither."""
    run_dir = Path(run_dir)
    found = [run_dir / name for name in (FEATURE_MODEL, CHECKPOINT) if (run_dir / name).is_file()]
    if len(found) == 2:
        raise ModelMismatchError(f"{run_dir}: holds both {FEATURE_MODEL} and {CHECKPOINT}; a "
                                 f"run has one model file: delete the one that is not this "
                                 f"run's, or train the run again")
    if not found:
        raise ValueError(f"{run_dir}: no model file ({CHECKPOINT} or {FEATURE_MODEL}): 04 "
                         f"could not predict with it")
    return found[0]


def check_model_identity(path: Path, config: dict) -> None:
    """ModelMismatchError naming the model file ``path`` and the mismatch unless the model it
    holds (``config``: the checkpoint's config or the feature model's) is its run folder's,
    as the folder's metrics.json describes the run: the same backbone (a feature model's
    learner is its run's backbone), and where the file records its run (``config["run"]``,
    lib.runs.fold_run.model_identity; files written before it existed record none) the same
    name, fold, seed and data fingerprint. A folder without metrics.json is not compared."""
    path = Path(path)
    if not (path.parent / METRICS).is_file():
        return  # nothing describes the run (every finished run has one: DONE comes after it)
    metrics = read_metrics(path.parent)
    expected = {**metrics.get("parameters", {}),
                "data_fingerprint": metrics.get("data_fingerprint")}
    recorded = {"backbone": config.get("learner", config.get("backbone")),
                **dict(config.get("run") or {})}
    for key in ("backbone", "fold", "seed", "data_fingerprint", "name"):
        value = recorded.get(key)
        if value is not None and key in expected and value != expected[key]:
            raise ModelMismatchError(f"{path}: {key} {value!r} in the model file, but the run's "
                                     f"{METRICS} says {expected[key]!r}: the file is not this "
                                     f"run's model (copied from another run?); train the run "
                                     f"again or put its own model file back")


def check_model_file(run_dir: Path) -> None:
    """Check that a finished run's model loads, as 04_predict would load it, and that it is
    the run's (model_path, check_model_identity): its feature_model.json through
    lib.models.model_file.load_feature_model (ModelFileError, a ValueError), or its
    checkpoint.pt through load_checkpoint, memory-mapped so that the tensors are not read
    (CheckpointError for a missing, truncated or foreign file; damage inside a tensor's bytes
    is found only when the weights are used). ValueError when the folder holds neither."""
    from lib.models.model_file import load_feature_model  # LightGBM where needed

    path = model_path(run_dir)
    if path.name == FEATURE_MODEL:
        check_model_identity(path, load_feature_model(path).config)
    else:
        check_model_identity(path, load_checkpoint(path, mmap=True)[1])

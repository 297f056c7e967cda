"""The training settings of one CNN run (03_train's parameters) and their checks."""

from __future__ import annotations

from dataclasses import dataclass, fields

from lib.core.checks import check_number
from lib.data.images import NORMS, TRANSFORMS
from lib.models.cnn import check_architecture

SELECT_EPOCHS = ("best", "last")
# What each numeric setting must be (lib.core.checks.check_number): checked when the settings
# are made, so that 03 and a sweep refuse batch_size 0 or lr -0.01 before training, naming it.
NUMBER_BOUNDS = {
    "mixup_prob": dict(minimum=0, maximum=1), "time_warp": dict(minimum=0, maximum=1),
    "epochs": dict(whole=True, minimum=1), "warmup_epochs": dict(minimum=0),
    "lr": dict(above=0), "weight_decay": dict(minimum=0),
    "batch_size": dict(whole=True, minimum=1), "eval_batch_size": dict(whole=True, minimum=1),
    "grad_clip": dict(above=0), "label_smoothing": dict(minimum=0, below=1)}


@dataclass(frozen=True)
class TrainSettings:
    """Every knob of one fit; defaults are the reference's."""

    norm: str = "mass"
    transform: str = "log"
    mixup_prob: float = 0.0
    time_warp: float = 0.0  # w: training items warp time t -> t**a, log a ~ U(-w, w); 0 = off
    epochs: int = 20
    warmup_epochs: float = 2.0
    lr: float = 1e-4
    weight_decay: float = 0.01
    batch_size: int = 8
    eval_batch_size: int = 32
    grad_clip: float = 64.0
    label_smoothing: float = 0.01
    amp: bool = True  # bf16 autocast, CUDA with compute capability >= 8.0 only
    tf32: bool = False  # let CUDA fp32 matmuls and convolutions use TF32 (else true fp32)
    channels_last: bool = True  # CUDA only
    compile: bool = False  # torch.compile the training forward (one graph per time width)
    # which state the run keeps for its test predictions and checkpoint: "best" (the epoch
    # with the lowest OOF loss, the reference's choice) or "last" (no choice made on the fold)
    select_epoch: str = "best"

    def __post_init__(self):
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {self.transform!r}")
        for name, bounds in NUMBER_BOUNDS.items():
            check_number(name, getattr(self, name), **bounds)
        if self.select_epoch not in SELECT_EPOCHS:
            raise ValueError(f"select_epoch must be one of {SELECT_EPOCHS}, got "
                             f"{self.select_epoch!r}")


def check_run_parameters(values: dict) -> None:
    """ValueError naming the parameter when 03_train's parameters ``values`` (its defaults
    overlaid with a params file, plan entry and overrides) cannot train: TrainSettings' checks
    and the model's (lib.models.check_architecture: backbone, head, sizes, TTA widths). What
    the sweep checks before any run starts."""
    known = {f.name for f in fields(TrainSettings)}
    TrainSettings(**{key: value for key, value in values.items() if key in known})
    check_architecture(values["backbone"], values["head"], pretrained=values["pretrained"],
                       m_bins=values["m_bins"], t_bins=values["t_bins"],
                       tta_offsets=values["tta_offsets"])

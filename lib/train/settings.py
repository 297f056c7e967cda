"""The training settings of one CNN run (03_train's parameters) and their checks."""

from __future__ import annotations

from dataclasses import dataclass, fields

from lib.data.images import NORMS, TRANSFORMS
from lib.models.cnn import check_architecture

SELECT_EPOCHS = ("best", "last")


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
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if not 0 <= self.mixup_prob <= 1:
            raise ValueError(f"mixup_prob must be in [0, 1], got {self.mixup_prob}")
        if self.select_epoch not in SELECT_EPOCHS:
            raise ValueError(f"select_epoch must be one of {SELECT_EPOCHS}, got "
                             f"{self.select_epoch!r}")
        if not 0 <= self.time_warp <= 1:
            raise ValueError(f"time_warp must be in [0, 1] (the largest |log a|), got "
                             f"{self.time_warp}")


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

"""Fit one model on one fold (method.md section 5), fast: the run's cached images live on the
device, a batch is an index selection, and norm, mixup, time warp, transform and width resizing
run batched on the device. Each epoch's random draws are made on the CPU and sent to the device
in one copy, so a training step never waits on the host. The same code runs on CPU (tests, demo)
and CUDA (bf16 where the GPU has it, channels_last, fused AdamW, optionally TF32 or compiled).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib.images import LOG1P_SCALE, MIN_CLIP, NORMS, TRANSFORMS
from lib.models import check_architecture
from lib.precision import precision_label
from lib.schema import N_LABELS

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


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or inf: the run stops, and no checkpoint counts as best."""


@dataclass
class FitResult:
    """What a fit produced. Logits are float32 (n, 9).

    best_epoch, best_oof_loss, oof_logits: the epoch with the lowest OOF loss and its OOF
    logits (that loss is flattered: the epoch was chosen on the same fold). last_oof_loss,
    last_oof_logits: those of the last epoch (a fixed schedule, no choice made on the fold).
    kept_epoch, state (on the CPU), test_logits: the epoch settings.select_epoch keeps, its
    weights and its test logits.
    """

    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_oof_loss: float = math.inf
    best_state: dict | None = None
    oof_logits: np.ndarray | None = None
    last_oof_loss: float = math.inf
    last_oof_logits: np.ndarray | None = None
    kept_epoch: int = -1
    state: dict | None = None
    test_logits: np.ndarray | None = None


# ---- pure pieces ---------------------------------------------------------------------------

def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based): linear warm-up from 0,
    then cosine down to 0 at ``total_steps``."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def smooth_labels(labels: torch.Tensor, eps: float) -> torch.Tensor:
    """Training targets y' = y / (1 + 2 eps) + eps (0 -> eps, 1 -> 1 - eps / (1 + 2 eps))."""
    return labels / (1 + 2 * eps) + eps


def normalize_axis(images: torch.Tensor, norm: str) -> torch.Tensor:
    """Torch twin of lib.images.normalize_axis on (..., m, t)."""
    if norm == "none":
        return images
    axis = -1 if norm == "mass" else -2
    return images / images.amax(dim=axis, keepdim=True).clamp_min(MIN_CLIP)


def intensity_transform(x: torch.Tensor, transform: str) -> torch.Tensor:
    """Torch twin of lib.images.intensity_transform on (B, 2, m, t), item by item."""
    x = (x / _item_max(x)).clamp(MIN_CLIP, 1.0)
    if transform == "log":
        x = torch.log10(x)
    else:
        x = torch.log10(x / _item_max(x) * LOG1P_SCALE + 1)
        x = x / _item_max(x)
    x = x - x.amin(dim=(-3, -2, -1), keepdim=True)
    return x / _item_max(x)


def _item_max(x: torch.Tensor) -> torch.Tensor:
    return x.amax(dim=(-3, -2, -1), keepdim=True)


def two_channel(images: torch.Tensor, derivatized: torch.Tensor) -> torch.Tensor:
    """(B, m, t) images + (B,) bool flags -> (B, 2, m, t); the flag picks the channel."""
    flags = derivatized[:, None, None]
    zeros = torch.zeros_like(images)
    return torch.stack([torch.where(flags, zeros, images), torch.where(flags, images, zeros)],
                       dim=1)


def mixup(x: torch.Tensor, labels: torch.Tensor, partner_x: torch.Tensor,
          partner_labels: torch.Tensor, mixed: torch.Tensor,
          fraction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix the items where ``mixed`` (B,) is True: x = f x + (1 - f) x2 and labels max(y, y2).

    x, partner_x: (B, 2, m, t); labels, partner_labels: (B, 9); fraction: (B,) in [0.4, 0.6].
    """
    f = fraction[:, None, None, None]
    mixed_x = torch.where(mixed[:, None, None, None], f * x + (1 - f) * partner_x, x)
    mixed_labels = torch.where(mixed[:, None], torch.maximum(labels, partner_labels), labels)
    return mixed_x, mixed_labels


def warp_exponents(size: int, max_log: float, generator: torch.Generator) -> torch.Tensor:
    """(size,) float32 exponents a with log a drawn uniformly in [-max_log, max_log]."""
    return torch.exp((2 * torch.rand(size, generator=generator) - 1) * max_log)


def time_warp(x: torch.Tensor, exponents: torch.Tensor) -> torch.Tensor:
    """Warp each item's normalised time axis by t -> t**a (linear interpolation in time).

    x: (B, C, m, t); exponents: (B,) a > 0 (a = 1 leaves the item as it is). What sat at
    normalised time s moves to s**a, so output column j (time u = j / (t - 1)) reads the input
    at u**(1 / a). Both ends stay put and the order in time is kept; mass rows never mix.
    Returns (B, C, m, t), same dtype.
    """
    n_time = x.shape[-1]
    u = torch.linspace(0, 1, n_time, device=x.device, dtype=torch.float64)
    source = u[None, :] ** (1 / exponents.to(device=x.device, dtype=torch.float64))[:, None]
    source = source * (n_time - 1)  # (B, t) input column positions
    # snap float noise to whole columns, so a = 1 is exactly the identity
    source = torch.where((source - source.round()).abs() < 1e-9, source.round(), source)
    left = source.floor().long().clamp(0, n_time - 1)
    right = (left + 1).clamp(max=n_time - 1)
    weight = (source - left).to(x.dtype)[:, None, None, :]
    shape = (-1, *x.shape[1:3], n_time)
    left, right = left[:, None, None, :].expand(shape), right[:, None, None, :].expand(shape)
    return x.gather(-1, left) * (1 - weight) + x.gather(-1, right) * weight


def bce_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy with logits over all cells of (n, 9): the OOF loss."""
    return float(F.binary_cross_entropy_with_logits(torch.as_tensor(logits, dtype=torch.float64),
                                                    torch.as_tensor(labels, dtype=torch.float64)))


# ---- data on the device ----------------------------------------------------------------------

class DeviceImages:
    """The run's cached images on the device; batches are index selections.

    images: (N, m, t) float32 single-channel images (max 1); derivatized: (N,) 0/1.
    """

    def __init__(self, images: np.ndarray, derivatized: np.ndarray, device: torch.device):
        self.images = torch.as_tensor(images, dtype=torch.float32).to(device)
        self.derivatized = torch.as_tensor(np.asarray(derivatized).astype(bool)).to(device)
        self.device = device

    def normed(self, index: torch.Tensor, norm: str) -> torch.Tensor:
        """(B,) indices -> (B, 2, m, t) two-channel images after the axis norm (step 2.1)."""
        index = index.to(self.device)
        return two_channel(normalize_axis(self.images[index], norm), self.derivatized[index])

    def model_input(self, index: torch.Tensor, norm: str, transform: str) -> torch.Tensor:
        """(B,) indices -> (B, 2, m, t) model inputs without mixup (steps 2.1, 2.3-2.5)."""
        return intensity_transform(self.normed(index, norm), transform)


# ---- one epoch's random draws ---------------------------------------------------------------

@dataclass(frozen=True)
class EpochDraws:
    """Every value one training epoch draws from the fit's generator, made up front.

    batches: (steps, B) int64 positions in the training set (a random permutation, cut into
    full batches); partners: (steps, B) int64 mixup partner positions, mixed: (steps, B) bool,
    fractions: (steps, B) float32 in [0.4, 0.6] (all three None without mixup); warps: (steps,
    B) float32 time-warp exponents (None without time warp).
    """

    batches: torch.Tensor
    partners: torch.Tensor | None = None
    mixed: torch.Tensor | None = None
    fractions: torch.Tensor | None = None
    warps: torch.Tensor | None = None

    def to(self, device: torch.device) -> EpochDraws:
        """The same draws on ``device``: one copy per tensor; on CUDA from pinned memory and
        without blocking the host."""
        pinned = device.type == "cuda"
        return EpochDraws(**{f.name: _to(getattr(self, f.name), device, pinned)
                             for f in fields(self)})


def _to(tensor: torch.Tensor | None, device: torch.device, pinned: bool) -> torch.Tensor | None:
    if tensor is None:
        return None
    if pinned:  # pin_memory() needs CUDA
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def epoch_draws(n_train: int, steps_per_epoch: int, settings: TrainSettings,
                generator: torch.Generator) -> EpochDraws:
    """One epoch's draws from ``generator`` (CPU), in the reference's order: the permutation
    of the n_train samples first, then per step the mixup partners, mixed flags and fractions
    (only when mixup_prob > 0) and the time-warp exponents (only when time_warp > 0). The
    stream, and so every value, is the same as drawing step by step during the epoch."""
    batch_size = settings.batch_size
    order = torch.randperm(n_train, generator=generator)
    batches = order[:steps_per_epoch * batch_size].reshape(steps_per_epoch, batch_size)
    partners, mixed, fractions, warps = [], [], [], []
    for _ in range(steps_per_epoch):
        if settings.mixup_prob > 0:
            partners.append(torch.randint(n_train, (batch_size,), generator=generator))
            mixed.append(torch.rand(batch_size, generator=generator) < settings.mixup_prob)
            fractions.append(0.4 + 0.2 * torch.rand(batch_size, generator=generator))
        if settings.time_warp > 0:  # no draw when off: the reference's random stream
            warps.append(warp_exponents(batch_size, settings.time_warp, generator))
    stacked = [torch.stack(values) if values else None
               for values in (partners, mixed, fractions, warps)]
    return EpochDraws(batches, *stacked)


# ---- precision and backends ------------------------------------------------------------------

def precision(device: torch.device, settings: TrainSettings,
              capability: tuple[int, int] | None = None) -> str:
    """What a fit on ``device`` computes in, as recorded in metrics.json: "bf16" (autocast;
    the head stays fp32), "tf32" (fp32 with TF32 matmuls and convolutions) or "fp32".

    capability: the GPU's (major, minor) compute capability; None asks torch when ``device``
    is CUDA. bf16 and TF32 need 8.0 (Ampere) or newer; amp on an older GPU computes in fp32,
    with a warning. On the CPU everything is fp32.
    """
    if device.type != "cuda":
        return "fp32"
    if capability is None:
        capability = torch.cuda.get_device_capability(device)
    label = precision_label("cuda", settings.amp, settings.tf32, capability)
    if settings.amp and label != "bf16":
        warnings.warn(f"bf16 autocast needs a GPU of compute capability 8.0 or newer; this "
                      f"one has {capability[0]}.{capability[1]}: computing in fp32",
                      stacklevel=2)
    return label


def configure_backends(device: torch.device, settings: TrainSettings) -> None:
    """On CUDA: cudnn.benchmark on (the shapes are few and fixed), and TF32 for fp32 matmuls
    and cuDNN convolutions only when settings.tf32 asks (cuDNN allows it by default, so without
    this even amp=False would not be true fp32). Nothing on other devices.

    The allow_tf32 flags work without warnings from torch 2.4 to 2.14; torch 2.9+ also has
    fp32_precision settings, but mixing the two is an error there, and torch's own inductor
    still reads cudnn.allow_tf32, which fails after only the new settings have been set.
    """
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = settings.tf32
    torch.backends.cudnn.allow_tf32 = settings.tf32


def _autocast(device: torch.device, mode: str):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=mode == "bf16")


# ---- fit and predict -------------------------------------------------------------------------

def predict_logits(model: nn.Module, data: DeviceImages, index: np.ndarray,
                   settings: TrainSettings) -> np.ndarray:
    """Eval-mode (TTA) logits (n, 9) float32 for the samples at ``index`` (n,). The batches'
    logits stay on the device and come back in one copy at the end."""
    model.eval()
    if len(index) == 0:
        return np.zeros((0, N_LABELS), dtype=np.float32)
    mode = precision(data.device, settings)
    index_t = torch.as_tensor(index).to(data.device)
    out = []
    with torch.no_grad():
        for start in range(0, len(index), settings.eval_batch_size):
            batch = index_t[start:start + settings.eval_batch_size]
            x = data.model_input(batch, settings.norm, settings.transform)
            with _autocast(data.device, mode):
                out.append(model(x).float())
    return torch.cat(out).cpu().numpy()


def make_optimizer(model: nn.Module, settings: TrainSettings, steps_per_epoch: int,
                   device: torch.device):
    """(AdamW, LambdaLR stepped once per optimizer step: linear warm-up, then cosine to 0).
    On CUDA the fused AdamW (one kernel for all parameters); elsewhere the default one."""
    total_steps = steps_per_epoch * settings.epochs
    warmup_steps = round(steps_per_epoch * settings.warmup_epochs)
    fused = dict(fused=True) if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr,
                                  weight_decay=settings.weight_decay, **fused)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup_steps, total_steps))
    return optimizer, scheduler


def train_one_epoch(model: nn.Module, data: DeviceImages, optimizer: torch.optim.Optimizer,
                    scheduler, draws: EpochDraws, train_index: torch.Tensor,
                    train_labels: torch.Tensor, settings: TrainSettings, *,
                    progress: str = "") -> torch.Tensor:
    """One pass over draws.batches: mixup, time warp, transform, forward, backward, clip,
    step. Returns the 0-dim sum of the step losses, on the device.

    draws, train_index (n_train,) rows of ``data`` and train_labels (n_train, 9) float32 are
    on data.device. Nothing here waits for the device (no .item(), no host copies, no
    data-dependent shapes), so on CUDA the host queues steps ahead of the GPU. progress: a
    tqdm bar with this label (empty: none).
    """
    model.train()
    device = data.device
    mode = precision(device, settings)
    loss_sum = torch.zeros((), device=device)
    for step in _bar(range(len(draws.batches)), progress):
        batch = draws.batches[step]
        x = data.normed(train_index[batch], settings.norm)
        labels = train_labels[batch]
        if draws.partners is not None:
            partners = draws.partners[step]
            x, labels = mixup(x, labels, data.normed(train_index[partners], settings.norm),
                              train_labels[partners], draws.mixed[step], draws.fractions[step])
        if draws.warps is not None:
            x = time_warp(x, draws.warps[step])
        x = intensity_transform(x, settings.transform)
        targets = smooth_labels(labels, settings.label_smoothing)
        with _autocast(device, mode):
            logits = model(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        scheduler.step()
        loss_sum += loss.detach()
    return loss_sum


def fit(model: nn.Module, data: DeviceImages, *, train_index: np.ndarray,
        train_labels: np.ndarray, oof_index: np.ndarray, oof_labels: np.ndarray,
        test_index: np.ndarray, settings: TrainSettings, seed: int,
        progress: bool = True) -> FitResult:
    """Train ``model`` (already on data.device, see prepare_model); return the OOF
    predictions of the best and of the last epoch, and the test predictions of the one
    settings.select_epoch keeps.

    train_index (n_train,), oof_index (n_oof,), test_index (n_test,): rows of ``data``;
    train_labels (n_train, 9) and oof_labels (n_oof, 9): 0/1. After every epoch the OOF loss
    (BCE on TTA logits) is measured; the epoch with the lowest (the later one on ties) is the
    best. select_epoch "best": its state (reloaded) gives the test logits; "last": the final
    state does. See FitResult.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = len(train_index) // settings.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_index)} training samples make no full batch of "
                         f"{settings.batch_size}")
    device = data.device
    optimizer, scheduler = make_optimizer(model, settings, steps_per_epoch, device)
    train_index_t = torch.as_tensor(train_index).to(device)
    train_labels_t = torch.as_tensor(train_labels, dtype=torch.float32).to(device)
    result = FitResult()

    for epoch in range(settings.epochs):
        started = time.perf_counter()
        lr_at_start = optimizer.param_groups[0]["lr"]
        draws = epoch_draws(len(train_index), steps_per_epoch, settings, generator).to(device)
        loss_sum = train_one_epoch(
            model, data, optimizer, scheduler, draws, train_index_t, train_labels_t, settings,
            progress=f"epoch {epoch + 1}/{settings.epochs}" if progress else "")
        train_loss = float(loss_sum) / steps_per_epoch  # the epoch's one wait for the device
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(f"epoch {epoch + 1}: training loss is {train_loss}")
        train_seconds = time.perf_counter() - started

        started = time.perf_counter()
        oof_logits = predict_logits(model, data, oof_index, settings)
        oof_loss = bce_loss(oof_logits, oof_labels)
        if not math.isfinite(oof_loss):
            raise NonFiniteLossError(f"epoch {epoch + 1}: OOF loss is {oof_loss}")
        result.history.append(dict(epoch=epoch + 1, train_loss=train_loss, oof_loss=oof_loss,
                                   lr=lr_at_start, train_seconds=train_seconds,
                                   eval_seconds=time.perf_counter() - started))
        if progress:
            print(f"epoch {epoch + 1}: train {train_loss:.4f}  oof {oof_loss:.4f}  "
                  f"({train_seconds:.1f} s)")
        if oof_loss <= result.best_oof_loss:
            result.best_epoch, result.best_oof_loss = epoch + 1, oof_loss
            result.best_state = {k: v.detach().cpu().clone()
                                 for k, v in model.state_dict().items()}
            result.oof_logits = oof_logits
    result.last_oof_loss, result.last_oof_logits = oof_loss, oof_logits

    if settings.select_epoch == "best":
        model.load_state_dict(result.best_state)
        result.kept_epoch, result.state = result.best_epoch, result.best_state
    else:
        result.kept_epoch = settings.epochs
        result.state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    result.test_logits = predict_logits(model, data, test_index, settings)
    return result


def prepare_model(model: nn.Module, device: torch.device, settings: TrainSettings) -> nn.Module:
    """Move the model to the device; on CUDA switch to channels_last when asked; compile its
    per-width forward when asked (see compile_widths)."""
    model = model.to(device)
    if settings.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        model.channels_last = True
    if settings.compile:
        compile_widths(model)
    return model


def compile_widths(model: nn.Module) -> None:
    """torch.compile the GcmsNet's training forward, in place (the state_dict keys stay).

    dynamic=False: one graph per time width (5), each made when the width first comes up,
    within dynamo's recompile limit (8) and none after. The eval forward stays eager: it
    would need a graph per width, batch size and grad mode (automatic dynamic shapes did not
    help: guards on the width made still more graphs).
    """
    eager = model.forward_width
    compiled = torch.compile(eager, dynamic=False)

    def forward_width(x: torch.Tensor, width: int) -> torch.Tensor:
        return compiled(x, width) if model.training else eager(x, width)

    model.forward_width = forward_width


def _bar(iterable, desc: str):
    if not desc:
        return iterable
    from tqdm import tqdm  # text bar on stderr: no widget library needed in a notebook

    return tqdm(iterable, desc=desc, leave=False)

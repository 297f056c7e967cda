"""Fit one model on one fold (method.md section 5), fast: the run's cached images live on the
device, a batch is an index selection, and norm, mixup, time warp, transform and width resizing
run batched on the device. Each epoch's random draws are made on the CPU and sent to the device
in one copy, so a training step never waits on the host. The same code runs on CPU (tests, demo)
and CUDA (bf16 where the GPU has it, channels_last, fused AdamW, optionally TF32 or compiled).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib.core.metrics import NonFiniteLossError
from lib.train.augment import EpochDraws, epoch_draws, mixup, smooth_labels, time_warp
from lib.train.device import DeviceImages, autocast, intensity_transform, precision, predict_logits
from lib.train.settings import TrainSettings


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


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based): linear warm-up from 0,
    then cosine down to 0 at ``total_steps``."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def bce_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy with logits over all cells of (n, 9): the OOF loss."""
    return float(F.binary_cross_entropy_with_logits(torch.as_tensor(logits, dtype=torch.float64),
                                                    torch.as_tensor(labels, dtype=torch.float64)))


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
        with autocast(device, mode):
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


def _bar(iterable, desc: str):
    if not desc:
        return iterable
    from tqdm import tqdm  # text bar on stderr: no widget library needed in a notebook

    return tqdm(iterable, desc=desc, leave=False)

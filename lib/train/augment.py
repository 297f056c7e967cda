"""Training-time augmentation on the device: label smoothing, mixup, time warp, and the random
draws of one epoch."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from lib.train.device import to_device
from lib.train.settings import TrainSettings


def smooth_labels(labels: torch.Tensor, eps: float) -> torch.Tensor:
    """Training targets y' = y / (1 + 2 eps) + eps (0 -> eps, 1 -> 1 - eps / (1 + 2 eps))."""
    return labels / (1 + 2 * eps) + eps


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
        return EpochDraws(**{f.name: to_device(getattr(self, f.name), device, pinned)
                             for f in fields(self)})


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

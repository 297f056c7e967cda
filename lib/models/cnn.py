"""The two heads of the reference on any timm backbone (method.md sections 3 and 4), and a 1D
sequence backbone over time (SeqBackbone) in the same frame.

Input (B, 2, m, t) -> + positional channels (time index / t, mass index / m) -> (B, 4, m, t)
-> trainable Conv2d(4, 3, 1) -> timm backbone (or SeqBackbone) -> head -> (B, 9) logits.
Training forward: one time width per batch; eval forward: mean logits over every width.
"""

from __future__ import annotations

import os
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from lib.core.schema import N_LABELS
from lib.models.seq1d import SEQ_BACKBONES, SeqBackbone

HEADS = ("cls3", "flatM")


TTA_OFFSETS = (-64, -32, 0, 32, 64)


WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class WeightsNotFoundError(FileNotFoundError):
    """pretrained=True but no local weights file was found; the message says where to put one."""


def tta_widths(t_bins: int, offsets: tuple[int, ...] = TTA_OFFSETS) -> list[int]:
    """The time widths of the augmentation and TTA: t_bins + each offset (192 -> 128..256)."""
    widths = [t_bins + offset for offset in offsets]
    if min(widths) < 1:
        raise ValueError(f"t_bins={t_bins} is too small for width offsets {offsets}")
    return widths


def resize_time(x: torch.Tensor, width: int) -> torch.Tensor:
    """(B, C, m, t) -> (B, C, m, width): bilinear on the time axis, mass axis unchanged (no
    antialiasing, as the reference's torchvision Resize did on tensors)."""
    if x.shape[-1] == width:
        return x
    return F.interpolate(x, size=(x.shape[-2], width), mode="bilinear", align_corners=False,
                         antialias=False)


def add_positional_channels(x: torch.Tensor) -> torch.Tensor:
    """(B, C, m, t) -> (B, C + 2, m, t): append time index / t and mass index / m, in [0, 1)."""
    batch, _, m_bins, t_bins = x.shape
    time = torch.arange(t_bins, device=x.device, dtype=x.dtype) / t_bins
    mass = torch.arange(m_bins, device=x.device, dtype=x.dtype) / m_bins
    return torch.cat([x, time.expand(batch, 1, m_bins, t_bins),
                      mass[:, None].expand(batch, 1, m_bins, t_bins)], dim=1)


class FlatMassHead(nn.Module):
    """flatM: (B, C, m', t') last feature map -> mean over time -> (B, C * m') -> Linear."""

    def __init__(self, channels: int, mass_rows: int, n_classes: int):
        super().__init__()
        self.fc = nn.Linear(channels * mass_rows, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features.mean(dim=-1).flatten(1))


class GcmsNet(nn.Module):
    """Positional channels + 1x1 input conv + backbone + head, with time-width TTA.

    backbone: a timm model; for cls3 it returns (B, 1000) ImageNet logits, for flatM
    (features_only) a list of feature maps of which the last is used.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, *, features_only: bool,
                 width_offsets: tuple[int, ...] = TTA_OFFSETS):
        super().__init__()
        self.input_conv = nn.Conv2d(4, 3, kernel_size=1)
        self.backbone = backbone
        self.head = head
        self.features_only = features_only
        self.width_offsets = tuple(width_offsets)
        self.channels_last = False  # set by lib.train.device.prepare_model on CUDA

    def forward_width(self, x: torch.Tensor, width: int) -> torch.Tensor:
        """(B, 2, m, t) -> (B, 9) logits at one time width."""
        x = add_positional_channels(resize_time(x, width))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.backbone(self.input_conv(x))
        features = out[-1] if self.features_only else out
        # The head (flatM's mean and the last Linear) runs in fp32 even under bf16 autocast, so
        # the logits, their TTA mean and the OOF loss that picks the best epoch are not rounded.
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.head(features.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2, m, t) -> (B, 9) logits. Training: one width drawn per call (per batch) from
        the torch RNG; eval: the mean of the logits over all widths."""
        widths = tta_widths(x.shape[-1], self.width_offsets)
        if self.training:
            pick = int(torch.randint(len(widths), (1,)))
            return self.forward_width(x, widths[pick])
        return torch.stack([self.forward_width(x, w) for w in widths]).mean(dim=0)


def check_architecture(backbone: str, head: str, *, pretrained: bool = False, m_bins: int = 256,
                       t_bins: int | None = None, tta_offsets=(0,)) -> None:
    """ValueError naming the parameter when a model of these parameters cannot be built or
    cannot take the cached images (m_bins x t_bins, time widths t_bins + each of
    tta_offsets): an unknown ``backbone`` (a timm name, with or without its pin tag, or a
    SEQ_BACKBONES name) or ``head``; a 1D sequence backbone with head other than cls3 or
    pretrained; sizes below 1, or a time width shorter than a sequence stem's stride."""
    if not (backbone in SEQ_BACKBONES or timm.is_model(backbone)):
        raise ValueError(f"backbone {backbone!r} is neither a timm model nor one of "
                         f"{sorted(SEQ_BACKBONES)}")
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    if m_bins < 1 or (t_bins is not None and t_bins < 1):
        raise ValueError(f"m_bins and t_bins must be at least 1, got {m_bins} and {t_bins}")
    shortest = None if t_bins is None else t_bins + min(tta_offsets)
    if shortest is not None and shortest < 1:
        raise ValueError(f"tta_offsets {list(tta_offsets)}: the shortest time width t_bins + "
                         f"{min(tta_offsets)} = {shortest} must be at least 1")
    if backbone in SEQ_BACKBONES:
        if head != "cls3" or pretrained:
            raise ValueError(f"backbone {backbone!r} (a 1D sequence model) takes head cls3 "
                             f"(a Linear on its time-pooled features) and pretrained false; "
                             f"got head {head!r}, pretrained {pretrained}")
        stride = SEQ_BACKBONES[backbone].stride
        if shortest is not None and shortest < stride:
            raise ValueError(f"t_bins {t_bins} with tta_offsets {list(tta_offsets)}: backbone "
                             f"{backbone!r} needs time widths of at least {stride} (its stem's "
                             f"stride), the shortest is {shortest}")


def build_model(backbone: str, head: str, *, pretrained: bool = False, m_bins: int = 256,
                n_classes: int = N_LABELS, weights: str | Path | None = None) -> GcmsNet:
    """A GcmsNet on the timm model ``backbone`` (pin tags, e.g. "hrnet_w64.ms_in1k").

    head: "cls3" (timm classifier with its 1000-class head, then Linear(1000, n_classes)) or
    "flatM" (features_only backbone, mean over time of the last feature map, flattened with
    its mass rows, then Linear(C * m', n_classes); m' is m_bins / 32 for the usual nets).
    pretrained: ImageNet weights, as timm users expect, from the first of: ``weights`` (a file,
    or a folder holding ``<backbone><suffix>``), the Hugging Face cache, timm's own download
    from the hub (cached as usual). Offline (HF_HUB_OFFLINE=1, or no network) with neither
    file nor cache, WeightsNotFoundError names the model and says where to put the file.
    pretrained=False: random init.

    A name of SEQ_BACKBONES ("seq1d", "seq1d_tiny") builds a SeqBackbone instead (random init
    only; its head is a Linear on the pooled features, asked for as "cls3").
    """
    check_architecture(backbone, head, pretrained=pretrained, m_bins=m_bins)
    if backbone in SEQ_BACKBONES:
        net = SeqBackbone(SEQ_BACKBONES[backbone], m_bins)
        return GcmsNet(net, nn.Linear(net.num_features, n_classes), features_only=False)
    kwargs = dict(in_chans=3, features_only=head == "flatM")
    if pretrained:
        net = _create_pretrained(backbone, weights, kwargs)
    else:
        net = timm.create_model(backbone, pretrained=False, **kwargs)
    if head == "cls3":
        head_module = nn.Linear(net.num_classes, n_classes)
    else:
        channels = net.feature_info.channels()[-1]
        head_module = FlatMassHead(channels, _last_feature_rows(net, m_bins), n_classes)
    return GcmsNet(net, head_module, features_only=head == "flatM")


def _last_feature_rows(features_net: nn.Module, m_bins: int) -> int:
    """Height (mass rows) of the last feature map for inputs of m_bins rows, by a dry run."""
    was_training = features_net.training
    features_net.eval()
    with torch.no_grad():
        rows = features_net(torch.zeros(1, 3, m_bins, 64))[-1].shape[-2]
    features_net.train(was_training)
    return int(rows)


def _create_pretrained(backbone: str, weights: str | Path | None, kwargs: dict) -> nn.Module:
    """timm.create_model(pretrained=True) from a local file or the cache, else from the hub."""
    try:
        local = find_weights(backbone, weights)
    except WeightsNotFoundError as missing:
        if _hub_offline():
            raise
        try:
            return timm.create_model(backbone, pretrained=True, **kwargs)
        except OSError as error:  # no network: huggingface_hub's LocalEntryNotFoundError, URLError
            raise WeightsNotFoundError(f"{missing} (The download from the hub failed: "
                                       f"{str(error).splitlines()[0]})") from None
    return timm.create_model(backbone, pretrained=True,
                             pretrained_cfg_overlay=dict(file=str(local)), **kwargs)


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (at import) or as set since."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "")
    return bool(constants.HF_HUB_OFFLINE) or value.upper() in {"1", "ON", "YES", "TRUE"}


def find_weights(backbone: str, weights: str | Path | None) -> Path:
    """The local weights file for a timm name: ``weights`` (file or folder), then the Hugging
    Face cache; else WeightsNotFoundError saying where to put one."""
    looked = []
    if weights:
        weights = Path(weights).expanduser()
        if weights.is_file():
            return weights
        candidates = [weights / f"{backbone}{suffix}" for suffix in WEIGHT_SUFFIXES]
        found = [c for c in candidates if c.is_file()]
        if found:
            return found[0]
        looked.append(f"{weights}/{backbone}{{{','.join(WEIGHT_SUFFIXES)}}}")
    cached = _hf_cache_file(backbone)
    if cached is not None:
        return cached
    hub_id = _hub_id(backbone)
    looked.append(f"the Hugging Face cache ({os.environ.get('HF_HOME', '~/.cache/huggingface')}"
                  f", repo {hub_id or 'unknown'})")
    raise WeightsNotFoundError(
        f"no pretrained weights for {backbone!r}: looked in {' and '.join(looked)}. Put the "
        f"file at weights/{backbone}.safetensors (and pass weights='weights'), or pre-fill "
        f"the cache on a machine with internet: `hf download {hub_id or 'timm/' + backbone}` "
        f"(online, pretrained: true downloads it through timm); or set pretrained: false to "
        f"train from random init.")


def _hub_id(backbone: str) -> str | None:
    try:
        return timm.models.get_pretrained_cfg(backbone).hf_hub_id
    except (RuntimeError, AttributeError, KeyError):
        return None


def _hf_cache_file(backbone: str) -> Path | None:
    hub_id = _hub_id(backbone)
    if not hub_id:
        return None
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(hub_id, filename)
        if isinstance(path, str):
            return Path(path)
    return None


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())

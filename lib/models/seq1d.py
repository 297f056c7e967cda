"""1D sequence backbones over time (the 1st place's family), used like timm names in
``backbone``. Their names are listed in lib.core.families.SEQ_BACKBONES too, for the ensemble."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class SeqConfig:
    """Sizes of a 1D sequence backbone (SEQ_BACKBONES)."""

    width: int  # channels of the convolutional stem and of the transformer
    layers: int  # transformer encoder layers
    heads: int  # attention heads
    stride: int  # the stem's total downsampling of time (2 or 4)
    lstm: bool  # a bidirectional LSTM after the transformer


# 1D models over time (the 1st place's family), used like timm names in ``backbone``
SEQ_BACKBONES = {
    "seq1d": SeqConfig(width=256, layers=4, heads=8, stride=2, lstm=True),  # GPU-sized
    "seq1d_tiny": SeqConfig(width=64, layers=2, heads=4, stride=4, lstm=False),  # CPU-sized
}


class SeqBackbone(nn.Module):
    """(B, 3, m, t) -> (B, features): the m/z rows (x 3 input channels) as channels and time as
    the sequence. A 1D convolutional stem (kernel 5, GELU, batch norm; time / ``stride``), a
    transformer encoder over time (pre-norm, GELU), optionally a bidirectional LSTM, then the
    mean and the maximum over time, concatenated. Time position comes from the positional
    channel GcmsNet adds (time index / t), so there is no separate position embedding.
    ``num_features``: the output size (2 x width)."""

    def __init__(self, config: SeqConfig, m_bins: int, in_chans: int = 3, dropout: float = 0.1):
        super().__init__()
        self.m_bins = m_bins
        width = config.width
        stem, channels = [], in_chans * m_bins
        for _ in range({2: 1, 4: 2}[config.stride]):
            stem += [nn.Conv1d(channels, width, 5, stride=2, padding=2), nn.BatchNorm1d(width),
                     nn.GELU()]
            channels = width
        self.stem = nn.Sequential(*stem)
        layer = nn.TransformerEncoderLayer(width, config.heads, 2 * width, dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.lstm = (nn.LSTM(width, width // 2, batch_first=True, bidirectional=True)
                     if config.lstm else None)
        self.num_features = 2 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] != self.m_bins:
            raise ValueError(f"this seq1d model was built for m_bins={self.m_bins} mass rows, "
                             f"got images of {x.shape[-2]}")
        sequence = self.stem(x.flatten(1, 2)).transpose(1, 2)  # (B, t', width)
        sequence = self.norm(self.encoder(sequence))
        if self.lstm is not None:
            sequence, _ = self.lstm(sequence)
        return torch.cat([sequence.mean(dim=1), sequence.amax(dim=1)], dim=1)

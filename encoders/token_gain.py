"""A learned output gain per token row (electrode, or electrode block): signed spatial filters before a mean.

Why (measured, docs/learning_curve.md): EEG here is average-referenced, so the channels of any source sum to
about zero. A readout that averages tokens over electrodes (CLS attention near uniform at the start, the
authors' StatHead mean, a masked mean) then cancels the music signal that a linear map of the same tokens
finds (a ridge on the flattened tokens of the pretrained encoder reads the song as well as a ridge on the
raw EEG; one on their mean reads nothing). A gain ``g[c] ∈ R^D`` per token row turns that mean into ``D``
signed spatial filters, one per feature. Drawn ``1 + std·N(0, 1)`` so the filters are not the plain average
from the first step; stored divided by ``lr_scale`` and multiplied back, so Adam moves the gain
``lr_scale`` times faster than the encoder's other weights (it must change sign within a few hundred steps).
A removed row is never read (its tokens are 0 and masked downstream whatever its gain).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["TokenGain"]


class TokenGain(nn.Module):
    """``forward(tokens [B, R', P, D], rows [B, R'] long) -> tokens * gain[rows]`` (``R`` rows in the table).

    ``weight [R, D]`` holds gain / ``lr_scale``."""

    def __init__(self, n_rows: int, dim: int, std: float, lr_scale: float):
        super().__init__()
        if std < 0 or lr_scale <= 0:
            raise ValueError(f"channel_gain_std must be >= 0 and channel_gain_lr_scale > 0, got {std}, {lr_scale}")
        self.lr_scale = float(lr_scale)
        g = torch.ones(n_rows, dim)
        if std:
            g = g + std * torch.randn(n_rows, dim)
        self.weight = nn.Parameter(g / self.lr_scale)

    @property
    def gain(self) -> Tensor:
        """The gains ``[R, D]``."""
        return self.weight * self.lr_scale

    def forward(self, tokens: Tensor, rows: Tensor) -> Tensor:
        return tokens * self.gain[rows][:, :, None, :]

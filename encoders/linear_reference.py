"""Linear EEG reference: the raw window, low-passed and decimated, mapped by one linear layer."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from encoders.base import EEGEncoder, EncoderOutput


class LinearReference(EEGEncoder):
    """The paper's weakest row: no nonlinearity, no tokens, every channel × time sample is a feature.

    The window ``[B, C, T]`` is average-pooled in time to ``target_rate`` Hz (a crude low-pass that keeps
    the phase-locked part of the response), flattened to ``[B, C·T']`` and projected to ``embed_dim``.
    A channel mask zero-fills absent channels (a linear map has no tokens to remove).

    Output: ``pooled [B, D]``, ``tokens [B, 1, D]`` (the pooled vector), ``token_time [1]``.
    """

    def __init__(self, n_channels: int, sfreq: float, n_times: int, ch_names: Sequence[str] | None = None,
                 embed_dim: int = 256, target_rate: float = 25.0, dropout: float = 0.0):
        super().__init__(n_channels, sfreq, n_times, ch_names)
        self.embed_dim = embed_dim
        self.pool = max(1, int(round(sfreq / target_rate)))
        self.n_feat_times = n_times // self.pool
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(n_channels * self.n_feat_times, embed_dim)

    def forward(self, eeg: Tensor, channel_mask: Tensor | None = None) -> EncoderOutput:
        """eeg ``[B, C, T]``, channel_mask ``[B, C]`` (True = present) -> :class:`EncoderOutput`."""
        self.check_input(eeg, channel_mask)
        x = eeg
        if channel_mask is not None:
            x = x * channel_mask.unsqueeze(-1).to(x.dtype)
        x = F.avg_pool1d(x[..., : self.n_feat_times * self.pool], self.pool)  # [B, C, T']
        pooled = self.proj(self.dropout(x.flatten(1)))
        return EncoderOutput(pooled, pooled.unsqueeze(1), torch.zeros(1, dtype=torch.long, device=eeg.device))

"""The one interface every EEG encoder implements.

Every encoder is a plain ``nn.Module`` built from the data's facts (``n_channels``, ``sfreq``,
``n_times``, ``ch_names``, linked from the data module by the CLI) and returns an
:class:`EncoderOutput`. Each encoder adapts its own input (rate, units, channel mapping) inside
``forward`` so the stages never special-case an encoder.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn


@dataclass
class EncoderOutput:
    """What an encoder returns.

    pooled: ``[B, D]`` one embedding per window.
    tokens: ``[B, N, D]`` token features (the pooled/CLS token is not among them).
    token_time: ``[N]`` long, which time patch each token belongs to.
    channel_attention: ``[B, C]`` readout attention over input channels, or ``None``.
    token_mask: ``[B, N]`` bool, True where a token is present (``None`` = all present). Encoders that
        remove the tokens of absent channels mark them here so heads can pool over present tokens only.
    """

    pooled: Tensor
    tokens: Tensor
    token_time: Tensor
    channel_attention: Tensor | None = None
    token_mask: Tensor | None = None


class EEGEncoder(nn.Module):
    """Base class: stores the data facts and declares ``embed_dim``.

    Args:
        n_channels: C, electrodes in the input, in montage order.
        sfreq: sampling rate of the input in Hz.
        n_times: T, samples per window.
        ch_names: electrode names (length C), for encoders that map channels by name or position.
    """

    embed_dim: int

    def __init__(self, n_channels: int, sfreq: float, n_times: int, ch_names: Sequence[str] | None = None):
        super().__init__()
        if n_channels <= 0 or n_times <= 0 or sfreq <= 0:
            raise ValueError(f"{type(self).__name__}: n_channels, n_times and sfreq must be positive, "
                             f"got {n_channels}, {n_times}, {sfreq}")
        if ch_names is not None and len(ch_names) != n_channels:
            raise ValueError(f"{type(self).__name__}: {len(ch_names)} ch_names for {n_channels} channels")
        self.n_channels = int(n_channels)
        self.sfreq = float(sfreq)
        self.n_times = int(n_times)
        self.ch_names = list(ch_names) if ch_names is not None else None

    def check_input(self, eeg: Tensor, channel_mask: Tensor | None) -> None:
        if eeg.dim() != 3 or eeg.shape[1] != self.n_channels:
            raise ValueError(f"{type(self).__name__} expects eeg [B, {self.n_channels}, T], got {tuple(eeg.shape)}")
        if channel_mask is not None and channel_mask.shape != eeg.shape[:2]:
            raise ValueError(f"channel_mask must be [B, C] = {tuple(eeg.shape[:2])}, got {tuple(channel_mask.shape)}")

    def forward(self, eeg: Tensor, channel_mask: Tensor | None = None) -> EncoderOutput:  # pragma: no cover
        raise NotImplementedError


def masked_mean(x: Tensor, mask: Tensor | None, dim: int = 1) -> Tensor:
    """Mean of ``x [B, N, D]`` over ``dim`` counting only ``mask [B, N]`` (True = present)."""
    if mask is None:
        return x.mean(dim)
    w = mask.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(dim) / w.sum(dim).clamp_min(1.0)

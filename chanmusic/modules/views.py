"""Temporal views of an EEG batch for self-distillation: crops, noise and DINO-style multi-crop.

- :func:`temporal_crop`, :class:`TemporalCrop`: random temporal crop, cut at the native rate and kept at its
  length (default: a crop of fraction ``s`` is ``s·T`` samples, rounded to whole patches), or resized to a
  fixed length with ``F.interpolate`` (``resize=True``, the authors' choice, which rescales frequencies).
- :func:`gaussian_noise`.
- :class:`MultiCropEEG`: DINO-style global/local crop views of an EEG batch (-> :class:`Views`).

Channel subsets are not drawn here (``chanmusic.modules.channel_dropout``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["gaussian_noise", "crop_length", "temporal_crop", "TemporalCrop", "Views", "MultiCropEEG"]


def gaussian_noise(eeg: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """``eeg + N(0, std²)`` (in the data's units; z-scored data: ``std`` is relative to the channel's std)."""
    if std <= 0:
        return eeg
    noise = torch.randn(eeg.shape, generator=generator, dtype=eeg.dtype,
                        device=eeg.device if generator is None else "cpu").to(eeg.device)
    return eeg + std * noise


def crop_length(T: int, fraction: float, quantum: int = 1) -> int:
    """Samples of a native-rate crop: ``fraction·T`` rounded to a whole number of ``quantum`` (a patch), at least
    one quantum, at most ``T`` rounded down to whole quanta."""
    q = max(1, int(quantum))
    n_max = max(1, T // q)
    return q * min(n_max, max(1, int(round(fraction * T / q))))


def temporal_crop(eeg: Tensor, scale: Sequence[float], out_len: int | None = None,
                  generator: torch.Generator | None = None, resize: bool = False, quantum: int = 1) -> Tensor:
    """Random temporal crop: one crop fraction ``s ~ U(scale)`` per batch (so the batch stays one tensor), a
    random start per sample.

    ``resize=False`` (default): the crop is cut at the native rate and keeps its length,
    :func:`crop_length` ``(T, s, quantum)`` samples (``out_len`` is ignored): every frequency stays where it
    was, so band power means the same Hz in every view. ``resize=True``: a crop of ``round(s·T)`` samples
    resized to ``out_len`` (default ``T``) by linear ``F.interpolate`` — this stretches time: a crop of
    fraction ``s`` resized to ``T`` lowers every frequency by ``s`` (10 Hz alpha at ``s = 0.5`` -> 5 Hz).

    eeg ``[B, C, T]`` -> ``[B, C, L]`` (``L`` the crop length, or ``out_len`` with ``resize``).
    """
    B, C, T = eeg.shape
    lo, hi = float(scale[0]), float(scale[1])
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"crop scale must satisfy 0 < lo <= hi <= 1, got {scale}")
    u = torch.rand((), generator=generator).item()
    s = lo + (hi - lo) * u
    if resize:
        L = max(2, min(T, int(round(s * T))))
        out_len = int(out_len or T)
    else:
        L = crop_length(T, s, quantum)
        out_len = L
    start = torch.randint(0, T - L + 1, (B,), generator=generator).to(eeg.device)
    idx = start[:, None] + torch.arange(L, device=eeg.device)  # [B, L]
    crop = eeg.gather(2, idx[:, None, :].expand(B, C, L))
    if L == out_len:
        return crop
    return F.interpolate(crop, size=out_len, mode="linear", align_corners=False)


class TemporalCrop(nn.Module):
    """:func:`temporal_crop` then :func:`gaussian_noise` as a module: ``[B, C, T] -> [B, C, L]``."""

    def __init__(self, scale: Sequence[float] = (0.5, 1.0), out_len: int | None = None, noise_std: float = 0.0,
                 resize: bool = False, quantum: int = 1):
        super().__init__()
        self.scale, self.out_len, self.noise_std = tuple(scale), out_len, noise_std
        self.resize, self.quantum = resize, quantum

    def forward(self, eeg: Tensor, generator: torch.Generator | None = None) -> Tensor:
        crop = temporal_crop(eeg, self.scale, self.out_len, generator, self.resize, self.quantum)
        return gaussian_noise(crop, self.noise_std, generator)


@dataclass
class Views:
    """Crops of one batch: ``global_views`` and ``local_views``, lists of ``[B, C, L_v]`` (each view its own length
    ``L_v`` with native-rate crops; ``global_len`` / ``local_len`` with ``resize``)."""

    global_views: list[Tensor]
    local_views: list[Tensor]


class MultiCropEEG(nn.Module):
    """DINO-style multi-crop for EEG: ``n_global`` large and ``n_local`` small temporal crops.

    Each view is an independent :class:`TemporalCrop` (own crop length, per-sample starts, own noise).
    Default (``resize=False``): native-rate crops that keep their length, rounded to whole ``quantum``
    samples (the encoder's patch) — a local crop is fewer patches, not a resampled window; views of
    different lengths are separate tensors. ``resize=True``: every global crop is resized to ``global_len``
    and every local crop to ``local_len`` (the authors' recipe; it rescales frequencies).
    Channel subsets are not drawn here (the teacher sees all channels of the global views; the pretraining
    module removes a subset per student view with ``chanmusic.modules.channel_dropout``).

    Args:
        n_global, n_local: number of views.
        global_scale, local_scale: crop fraction ranges of the window.
        global_len, local_len: resized lengths in samples with ``resize`` (default: the input ``T`` and
            ``T // 2``); ignored otherwise.
        global_noise, local_noise: Gaussian noise std added to each view.
        resize: resize crops (see above). quantum: native crop lengths are multiples of it.
    """

    def __init__(self, n_global: int = 2, n_local: int = 4, global_scale: Sequence[float] = (0.5, 1.0),
                 local_scale: Sequence[float] = (0.2, 0.5), global_len: int | None = None, local_len: int | None = None,
                 global_noise: float = 0.01, local_noise: float = 0.03, resize: bool = False, quantum: int = 1):
        super().__init__()
        if n_global < 1 or n_local < 0:
            raise ValueError(f"need n_global >= 1 and n_local >= 0, got {n_global}, {n_local}")
        self.n_global, self.n_local = n_global, n_local
        self.global_len, self.local_len = global_len, local_len
        self.resize = resize
        self.global_crop = TemporalCrop(global_scale, global_len, global_noise, resize, quantum)
        self.local_crop = TemporalCrop(local_scale, local_len, local_noise, resize, quantum)

    def forward(self, eeg: Tensor, generator: torch.Generator | None = None) -> Views:
        T = eeg.shape[-1]
        self.global_crop.out_len = self.global_len or T
        self.local_crop.out_len = self.local_len or max(1, T // 2)
        return Views([self.global_crop(eeg, generator) for _ in range(self.n_global)],
                     [self.local_crop(eeg, generator) for _ in range(self.n_local)])

"""EEG augmentations, apart from the training loop.

- :class:`ChannelDropout`: structured channel dropout on ``channel_mask`` (random or spatial clusters).
- :func:`drop_channels`: the functional form (a random channel subset removed), used by pretraining views.
- :func:`temporal_crop`, :class:`TemporalCrop`: random temporal crop resized back with ``F.interpolate``.
- :func:`gaussian_noise`.
- :class:`MultiCropEEG`: DINO-style global/local crop views of an EEG batch.

Masks are ``[B, C]`` bool, True = present; channel-wise encoders remove the tokens of absent channels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from encoders.montage import DEFAULT_MONTAGE, distance_matrix, resolve_positions


def _n_drop(n_channels: int, rate: float) -> int:
    return int(n_channels * rate)


def drop_channels(channel_mask: Tensor, rate: float, generator: torch.Generator | None = None) -> Tensor:
    """Remove ``int(C·rate)`` channels per sample uniformly at random, preferring present ones.

    channel_mask ``[B, C]`` bool -> ``[B, C]`` bool. If a sample has fewer present channels than the
    number to drop, all of its channels end up absent (encoders still return a defined CLS).
    """
    B, C = channel_mask.shape
    n = _n_drop(C, rate)
    if n == 0:
        return channel_mask
    scores = torch.rand(B, C, generator=generator, device=channel_mask.device if generator is None else "cpu")
    scores = scores.to(channel_mask.device).masked_fill(~channel_mask, 2.0)
    drop = scores.argsort(dim=1)[:, :n]
    return channel_mask.scatter(1, drop, False)


def drop_clusters(channel_mask: Tensor, rate: float, distances: Tensor, n_clusters: int = 1,
                  generator: torch.Generator | None = None) -> Tensor:
    """Remove ``int(C·rate)`` channels per sample as ``n_clusters`` spatial clusters of neighbours.

    Per sample, ``n_clusters`` centre electrodes are drawn uniformly among the present ones; the present
    channels nearest to their nearest centre (``distances [C, C]``) are removed until ``int(C·rate)`` are
    gone — with one cluster, a ball of electrodes around the centre. Same count as :func:`drop_channels`.
    """
    B, C = channel_mask.shape
    n = _n_drop(C, rate)
    if n == 0:
        return channel_mask
    dev = channel_mask.device
    scores = torch.rand(B, C, generator=generator, device=dev if generator is None else "cpu").to(dev)
    scores = scores.masked_fill(~channel_mask, 2.0)  # centres among present channels (if any)
    centres = scores.argsort(dim=1)[:, : max(1, n_clusters)]  # [B, k]
    d = distances.to(dev)[centres].amin(1)  # [B, C]: distance to the nearest centre
    d = d.masked_fill(~channel_mask, float("inf"))
    drop = d.argsort(dim=1, stable=True)[:, :n]
    return channel_mask.scatter(1, drop, False)


class ChannelDropout(nn.Module):
    """Per sample, mark a subset of whole channels absent in ``channel_mask`` (train mode only).

    ``rate``: fraction of all channels dropped per sample (``int(C·rate)``, taken among present ones).

    Modes:
        ``"random"``: uniformly random electrodes.
        ``"cluster"``: ``n_clusters`` spatially contiguous patches of neighbouring electrodes (a missing
            region of the cap), see :func:`drop_clusters`. Electrode positions come from ``positions [C, 3]``,
            else ``ch_names`` resolved through the MNE ``montage`` (default ``GSN-HydroCel-129``), else — when
            neither is given, as in ``AlignModule`` — from the default names for ``C`` channels
            (``encoders.montage.default_ch_names``: NMED's ``E1``–``E124`` + ``Cz`` for 125), resolved at
            the first call.
    """

    MODES = ("random", "cluster")

    def __init__(self, rate: float = 0.2, mode: str = "random", positions: Sequence[Sequence[float]] | None = None,
                 ch_names: Sequence[str] | None = None, n_clusters: int = 1, montage: str = DEFAULT_MONTAGE):
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"channel dropout rate must be in [0, 1), got {rate}")
        if mode not in self.MODES:
            raise ValueError(f"channel dropout mode {mode!r} is not one of {self.MODES}")
        if n_clusters < 1:
            raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
        self.rate, self.mode, self.n_clusters, self.montage = rate, mode, n_clusters, montage
        self.positions = np.asarray(positions, dtype=np.float64) if positions is not None else None
        self.ch_names = list(ch_names) if ch_names is not None else None
        self._distances: Tensor | None = None

    def distances(self, n_channels: int) -> Tensor:
        """``[C, C]`` electrode distances (computed once)."""
        if self._distances is None or self._distances.shape[0] != n_channels:
            pos = resolve_positions(n_channels, self.ch_names, self.positions, self.montage)
            self._distances = torch.from_numpy(distance_matrix(pos)).float()
        return self._distances

    def forward(self, channel_mask: Tensor) -> Tensor:
        """channel_mask ``[B, C]`` bool -> ``[B, C]`` bool with extra channels set False."""
        if not self.training or self.rate == 0.0:
            return channel_mask
        if self.mode == "cluster":
            return drop_clusters(channel_mask, self.rate, self.distances(channel_mask.shape[1]), self.n_clusters)
        return drop_channels(channel_mask, self.rate)

    def extra_repr(self) -> str:
        return f"rate={self.rate}, mode={self.mode!r}" + (f", n_clusters={self.n_clusters}" if self.mode == "cluster" else "")


def gaussian_noise(eeg: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """``eeg + N(0, std²)`` (in the data's units; z-scored data: ``std`` is relative to the channel's std)."""
    if std <= 0:
        return eeg
    noise = torch.randn(eeg.shape, generator=generator, dtype=eeg.dtype,
                        device=eeg.device if generator is None else "cpu").to(eeg.device)
    return eeg + std * noise


def temporal_crop(eeg: Tensor, scale: Sequence[float], out_len: int | None = None,
                  generator: torch.Generator | None = None) -> Tensor:
    """Random temporal crop resized to ``out_len`` samples.

    One crop length ``L = round(s·T)`` per batch with ``s ~ U(scale)`` (so the batch stays one tensor), a
    random start per sample, then linear ``F.interpolate`` to ``out_len`` (default ``T``). Note that
    resizing stretches time: a crop of fraction ``s`` resized to ``T`` lowers every frequency by ``s``.

    eeg ``[B, C, T]`` -> ``[B, C, out_len]``.
    """
    B, C, T = eeg.shape
    lo, hi = float(scale[0]), float(scale[1])
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"crop scale must satisfy 0 < lo <= hi <= 1, got {scale}")
    out_len = int(out_len or T)
    u = torch.rand((), generator=generator).item()
    L = max(2, min(T, int(round((lo + (hi - lo) * u) * T))))
    start = torch.randint(0, T - L + 1, (B,), generator=generator).to(eeg.device)
    idx = start[:, None] + torch.arange(L, device=eeg.device)  # [B, L]
    crop = eeg.gather(2, idx[:, None, :].expand(B, C, L))
    if L == out_len:
        return crop
    return F.interpolate(crop, size=out_len, mode="linear", align_corners=False)


class TemporalCrop(nn.Module):
    """:func:`temporal_crop` then :func:`gaussian_noise` as a module: ``[B, C, T] -> [B, C, out_len]``."""

    def __init__(self, scale: Sequence[float] = (0.5, 1.0), out_len: int | None = None, noise_std: float = 0.0):
        super().__init__()
        self.scale, self.out_len, self.noise_std = tuple(scale), out_len, noise_std

    def forward(self, eeg: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return gaussian_noise(temporal_crop(eeg, self.scale, self.out_len, generator), self.noise_std, generator)


@dataclass
class Views:
    """Crops of one batch: ``global_views`` (each ``[B, C, global_len]``), ``local_views`` (``[B, C, local_len]``)."""

    global_views: list[Tensor]
    local_views: list[Tensor]


class MultiCropEEG(nn.Module):
    """DINO-style multi-crop for EEG: ``n_global`` large and ``n_local`` small temporal crops.

    Each view is an independent :class:`TemporalCrop` (own crop length, per-sample starts, own noise).
    Channel subsets are not drawn here (the teacher sees all channels of the global views; the pretraining
    module removes a random subset per student view with :func:`drop_channels`).

    Args:
        n_global, n_local: number of views.
        global_scale, local_scale: crop fraction ranges of the window.
        global_len, local_len: resized lengths in samples (default: the input ``T`` and ``T // 2``).
        global_noise, local_noise: Gaussian noise std added to each view.
    """

    def __init__(self, n_global: int = 2, n_local: int = 4, global_scale: Sequence[float] = (0.5, 1.0),
                 local_scale: Sequence[float] = (0.2, 0.5), global_len: int | None = None, local_len: int | None = None,
                 global_noise: float = 0.01, local_noise: float = 0.03):
        super().__init__()
        if n_global < 1 or n_local < 0:
            raise ValueError(f"need n_global >= 1 and n_local >= 0, got {n_global}, {n_local}")
        self.n_global, self.n_local = n_global, n_local
        self.global_len, self.local_len = global_len, local_len
        self.global_crop = TemporalCrop(global_scale, global_len, global_noise)
        self.local_crop = TemporalCrop(local_scale, local_len, local_noise)

    def forward(self, eeg: Tensor, generator: torch.Generator | None = None) -> Views:
        T = eeg.shape[-1]
        self.global_crop.out_len = self.global_len or T
        self.local_crop.out_len = self.local_len or max(1, T // 2)
        return Views([self.global_crop(eeg, generator) for _ in range(self.n_global)],
                     [self.local_crop(eeg, generator) for _ in range(self.n_local)])

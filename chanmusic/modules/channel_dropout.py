"""Channel dropout: whole channels marked absent in ``channel_mask`` (random electrodes or spatial clusters).

- :class:`ChannelDropout`: the module (train mode only), used by alignment and by pretraining's student views.
- :func:`drop_channels`: the functional form (a random channel subset removed).
- :func:`drop_clusters`: the same count removed as spatial clusters of neighbouring electrodes.

Masks are ``[B, C]`` bool, True = present; channel-wise encoders remove the tokens of absent channels.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from chanmusic.core.electrodes import DEFAULT_MONTAGE, distance_matrix, resolve_positions

__all__ = ["drop_channels", "drop_clusters", "ChannelDropout"]


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
            (``chanmusic.core.electrodes.default_ch_names``: NMED's ``E1``–``E124`` + ``Cz`` for 125), resolved at
            the first call.
    """

    MODES = ("random", "cluster")

    def __init__(self, rate: float = 0.2, mode: str = "cluster", positions: Sequence[Sequence[float]] | None = None,
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

"""Channel identity for channel-wise token encoders: a learned table, or a function of electrode position.

- :class:`LookupChannelEmbedding`: one learned vector per electrode of the training montage (the paper's
  choice). Runs on that montage or a subset of it (``channel_index``), nothing else.
- :class:`PositionChannelEmbedding`: the vector is computed from the electrode's 3-D position, so any
  electrode with a known position has one: a model trained on NMED's 125 EGI channels runs on a 10-20 cap,
  another net, or a subset in any order, without retraining (how well it transfers is another question:
  see the caveat in the class docstring).

Positions come from MNE standard montages through :mod:`chanmusic.core.electrodes` (metres, MNE's template frame);
this module imports neither ``datamodules`` nor ``chanmusic``.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from chanmusic.core.electrodes import DEFAULT_MONTAGE, resolve_positions


class LookupChannelEmbedding(nn.Embedding):
    """A learned vector per channel of the training montage: ``forward(index [...]) -> [..., dim]``.

    A plain ``nn.Embedding`` (same weights and state-dict key ``weight``), named for what it is.
    """

    def __init__(self, n_channels: int, dim: int):
        super().__init__(n_channels, dim)


def unit_directions(positions: Tensor, origin: Sequence[float] = (0.0, 0.0, 0.0), eps: float = 1e-9) -> Tensor:
    """``[..., 3]`` positions -> unit vectors from ``origin`` (scale-free: metres or millimetres alike)."""
    p = positions - positions.new_tensor(origin)
    return p / p.norm(dim=-1, keepdim=True).clamp_min(eps)


class PositionChannelEmbedding(nn.Module):
    """Electrode embedding from its 3-D position: ``forward(positions [..., 3]) -> [..., dim]``.

    ``u = (p − origin) / |p − origin|`` (the electrode's direction on the unit sphere), then random Fourier
    features ``[u, sin(2π u B), cos(2π u B)]`` with a fixed ``B [3, n_freqs] ~ N(0, sigma²)`` (a seeded buffer,
    saved in checkpoints), then a small MLP ``Linear → GELU → Linear`` to ``dim``. The embedding depends on the
    position only (not on the channel's name, index or order), and smoothly: nearby electrodes get similar
    vectors, ``sigma`` sets how fast it may vary (1 cycle per unit sphere radius ≈ 60° of scalp at sigma 1).

    Caveat: MNE's templates are not co-registered exactly (GSN-HydroCel-129 vs ``standard_1005`` place the
    same 10-20 site 1–2 cm apart, a few degrees on the sphere), so cross-montage transfer sees slightly moved
    electrodes; the smoothness is what makes that tolerable. Measured positions (``positions=``) are better.

    Args:
        dim: output size (the encoder's ``embed_dim``).
        n_freqs: random frequencies (features = 3 + 2·n_freqs).
        sigma: std of the frequencies, in cycles per unit radius.
        hidden: MLP width (default ``dim``).
        origin: sphere centre in the positions' units (MNE templates: the head origin, ``(0, 0, 0)``).
        seed: seed of ``B`` (a run's ``B`` is in its checkpoint either way).
    """

    def __init__(self, dim: int, n_freqs: int = 32, sigma: float = 1.0, hidden: int | None = None,
                 origin: Sequence[float] = (0.0, 0.0, 0.0), seed: int = 0):
        super().__init__()
        if n_freqs < 1 or sigma <= 0:
            raise ValueError(f"n_freqs must be >= 1 and sigma > 0, got {n_freqs}, {sigma}")
        self.dim, self.n_freqs, self.sigma = dim, n_freqs, sigma
        self.origin = tuple(float(v) for v in origin)
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", torch.randn(3, n_freqs, generator=g) * sigma)
        hidden = hidden or dim
        self.mlp = nn.Sequential(nn.Linear(3 + 2 * n_freqs, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def reset_parameters(self) -> None:
        """PyTorch's default init of the MLP (an encoder-wide small-std init would make every electrode's
        vector nearly the same at the start)."""
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def features(self, positions: Tensor) -> Tensor:
        u = unit_directions(positions.float(), self.origin)
        z = 2 * math.pi * (u @ self.freqs)
        return torch.cat([u, z.sin(), z.cos()], dim=-1)

    def forward(self, positions: Tensor) -> Tensor:
        if positions.shape[-1] != 3:
            raise ValueError(f"positions must be [..., 3], got {tuple(positions.shape)}")
        return self.mlp(self.features(positions))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_freqs={self.n_freqs}, sigma={self.sigma}, origin={self.origin}"


def channel_positions(n_channels: int, ch_names: Sequence[str] | None = None, positions=None,
                      montage: str = DEFAULT_MONTAGE) -> Tensor:
    """``[C, 3]`` float32 positions: explicit ``positions``, else ``ch_names`` looked up in the MNE ``montage``,
    else the montage's default names for ``C`` channels (:func:`chanmusic.core.electrodes.resolve_positions`)."""
    return torch.from_numpy(np.asarray(resolve_positions(n_channels, ch_names, positions, montage), dtype=np.float32))

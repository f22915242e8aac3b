"""Which electrodes a robustness evaluation removes: seeded, nested removal orders (random or a whole region)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from chanmusic.core.electrodes import DEFAULT_MONTAGE, distance_matrix, resolve_positions

MODES = ("random", "region")


def removal_order(ch_names: Sequence[str], mode: str, seed: int, montage: str = DEFAULT_MONTAGE,
                  positions: np.ndarray | None = None) -> np.ndarray:
    """``[C]`` channel indices in removal order for ``(mode, seed)``: removing ``k`` = its first ``k``.

    ``random``: a seeded permutation. ``region``: a seeded random centre electrode, then every electrode by
    distance to it (nearest first, ties by index). Depends only on the channel names (or ``positions``),
    ``mode`` and ``seed``.
    """
    if mode not in MODES:
        raise ValueError(f"--mode: {mode!r} is not one of {MODES}")
    C = len(ch_names)
    rng = np.random.default_rng([int(seed), MODES.index(mode)])
    if mode == "random":
        return rng.permutation(C)
    pos = resolve_positions(C, list(ch_names), positions, montage)
    centre = int(rng.integers(C))
    return np.argsort(distance_matrix(pos)[centre], kind="stable")


def kept_channels(order: np.ndarray, k: int) -> torch.Tensor:
    """``[C]`` bool, False for the first ``k`` channels of ``order``."""
    keep = torch.ones(len(order), dtype=torch.bool)
    keep[torch.as_tensor(order[:k], dtype=torch.long)] = False
    return keep


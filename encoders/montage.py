"""Electrode positions and neighbour groups for a list of channel names (MNE standard montages).

Lives in ``encoders`` so encoders (block tokens) and ``chanmusic.modules.augment`` (cluster channel dropout) can
both reach it; it imports neither ``datamodules`` nor ``chanmusic``.

NMED rows are ``E1``–``E124`` + ``Cz`` of the EGI ``GSN-HydroCel-129`` net (E125–E128, the face/cheek
electrodes, are dropped by the release). Positions are MNE's, in metres, head frame.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

DEFAULT_MONTAGE = "GSN-HydroCel-129"
# names that differ between files and MNE's montage: EGI's vertex reference is E129 = Cz
ALIASES = {"E129": "Cz", "VREF": "Cz", "REF": "Cz"}


@lru_cache(maxsize=8)
def _montage_positions(montage: str) -> tuple[tuple[str, ...], np.ndarray]:
    import mne

    pos = mne.channels.make_standard_montage(montage).get_positions()["ch_pos"]
    names = tuple(pos)
    return names, np.stack([np.asarray(pos[n], dtype=np.float64) for n in names])


def montage_ch_names(montage: str = DEFAULT_MONTAGE) -> list[str]:
    """All electrode names of an MNE standard montage, in MNE's order."""
    return list(_montage_positions(montage)[0])


def default_ch_names(n_channels: int, montage: str = DEFAULT_MONTAGE) -> list[str]:
    """Channel names to assume when the data gives none.

    For ``GSN-HydroCel-129`` and ``n_channels == 125`` this is the NMED layout (``E1``–``E124`` + ``Cz``);
    otherwise the first ``n_channels`` names of the montage (an error if it has fewer).
    """
    names = montage_ch_names(montage)
    if montage == DEFAULT_MONTAGE and n_channels == 125:
        return [f"E{i}" for i in range(1, 125)] + ["Cz"]
    if n_channels > len(names):
        raise ValueError(f"montage {montage} has {len(names)} electrodes; cannot name {n_channels} channels — "
                         f"pass ch_names or positions")
    return names[:n_channels]


def electrode_positions(ch_names: Sequence[str], montage: str = DEFAULT_MONTAGE) -> np.ndarray:
    """``[C, 3]`` float64 positions (metres) of ``ch_names`` in an MNE standard montage.

    Names match case-insensitively; ``E129``/``VREF`` resolve to ``Cz``. Unknown names raise ``ValueError``.
    """
    names, xyz = _montage_positions(montage)
    lookup = {n.lower(): i for i, n in enumerate(names)}
    rows, unknown = [], []
    for ch in ch_names:
        key = ALIASES.get(str(ch).upper(), str(ch)).lower()
        if key in lookup:
            rows.append(lookup[key])
        else:
            unknown.append(ch)
    if unknown:
        raise ValueError(f"channels not in montage {montage}: {unknown[:10]}{' …' if len(unknown) > 10 else ''}")
    return xyz[rows].copy()


def resolve_positions(n_channels: int, ch_names: Sequence[str] | None = None, positions=None,
                      montage: str = DEFAULT_MONTAGE) -> np.ndarray:
    """Positions ``[C, 3]`` from explicit ``positions``, else ``ch_names``, else :func:`default_ch_names`."""
    if positions is not None:
        p = np.asarray(positions, dtype=np.float64)
        if p.shape != (n_channels, 3):
            raise ValueError(f"positions must be [{n_channels}, 3], got {p.shape}")
        return p
    if ch_names is None:
        ch_names = default_ch_names(n_channels, montage)
    if len(ch_names) != n_channels:
        raise ValueError(f"{len(ch_names)} ch_names for {n_channels} channels")
    return electrode_positions(ch_names, montage)


def distance_matrix(positions: np.ndarray) -> np.ndarray:
    """``[C, C]`` Euclidean distances between electrodes."""
    p = np.asarray(positions, dtype=np.float64)
    return np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1))


def neighbour_groups(positions: np.ndarray, n_groups: int = 16, seed: int = 0, n_iter: int = 100) -> list[list[int]]:
    """Partition electrodes into ``n_groups`` spatial groups of neighbours (deterministic).

    Seeded farthest-point initialisation (the first centre is the electrode ``seed`` picks with a
    ``numpy`` ``default_rng(seed)``; each next centre is the electrode farthest from all chosen ones) followed
    by Lloyd k-means iterations on the 3-D positions. An emptied group takes the electrode farthest from
    its centre. Returns ``n_groups`` lists of channel indices, each sorted, together covering every channel
    exactly once; groups are ordered by their smallest channel index.
    """
    p = np.asarray(positions, dtype=np.float64)
    C = len(p)
    if not 1 <= n_groups <= C:
        raise ValueError(f"n_groups must be in [1, {C}], got {n_groups}")
    rng = np.random.default_rng(seed)
    centres = [int(rng.integers(C))]
    d_min = np.linalg.norm(p - p[centres[0]], axis=1)
    for _ in range(1, n_groups):
        nxt = int(np.argmax(d_min))
        centres.append(nxt)
        d_min = np.minimum(d_min, np.linalg.norm(p - p[nxt], axis=1))
    c = p[centres].copy()
    assign = np.full(C, -1)
    for _ in range(n_iter):
        d = np.linalg.norm(p[:, None, :] - c[None, :, :], axis=-1)  # [C, G]
        new = d.argmin(1)
        for g in range(n_groups):  # keep every group non-empty
            if not np.any(new == g):
                far = int(np.argmax(d[np.arange(C), new]))
                new[far] = g
        if np.array_equal(new, assign):
            break
        assign = new
        c = np.stack([p[assign == g].mean(0) for g in range(n_groups)])
    groups = [sorted(np.flatnonzero(assign == g).tolist()) for g in range(n_groups)]
    return sorted(groups, key=lambda g: g[0])

"""Channel names and electrode positions: the NMED channel table, name aliases, the one position lookup
(MNE standard montages) and neighbour groups.

Lives in ``encoders`` so encoders (block tokens) and ``chanmusic.modules.channel_dropout`` (cluster dropout) can
both reach it; it imports neither ``datamodules`` nor ``chanmusic``.

NMED rows are ``E1``–``E124`` + ``Cz`` of the EGI ``GSN-HydroCel-129`` net (E125–E128, the face/cheek
electrodes, are dropped by the release): :data:`NMED_CH_NAMES`, the table every package uses. Positions are
MNE's, in metres, head frame; :func:`lookup_positions` finds a channel's row by name (case-insensitive,
:data:`ALIASES` resolved) for :func:`electrode_positions` here and ``encoders.channel_mapping``'s unit positions.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np

DEFAULT_MONTAGE = "GSN-HydroCel-129"
# the one channel-name table of the NMED releases: EGI E1..E124 + the vertex reference Cz (125 rows)
NMED_CH_NAMES: tuple[str, ...] = tuple([f"E{i}" for i in range(1, 125)] + ["Cz"])
# names that differ between files and MNE's montage (keys upper case): EGI's vertex reference is E129 = Cz
ALIASES = {"E129": "Cz", "VREF": "Cz", "REF": "Cz"}


@lru_cache(maxsize=8)
def _standard_montage(montage: str) -> dict:
    """MNE's ``get_positions()`` of a standard montage (``ch_pos``, fiducials, ``coord_frame``), read once."""
    import mne

    return mne.channels.make_standard_montage(montage).get_positions()


@lru_cache(maxsize=8)
def montage_positions(montage: str) -> tuple[tuple[str, ...], np.ndarray]:
    """Names (MNE's order) and ``[n, 3]`` float64 positions (metres, head frame) of a standard montage."""
    pos = _standard_montage(montage)["ch_pos"]
    names = tuple(pos)
    xyz = np.stack([np.asarray(pos[n], dtype=np.float64) for n in names])
    xyz.setflags(write=False)  # cached: shared by every caller
    return names, xyz


def montage_fiducials(montage: str) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """``(nasion, lpa, rpa)`` of a standard montage, each ``[3]`` or ``None`` where the montage has none."""
    pos = _standard_montage(montage)
    return pos.get("nasion"), pos.get("lpa"), pos.get("rpa")


def channel_key(ch: str) -> str:
    """Upper-case lookup key of a channel name, :data:`ALIASES` resolved (``E129``/``VREF``/``REF`` -> ``CZ``)."""
    name = str(ch).upper()
    return ALIASES.get(name, name).upper()


def lookup_positions(ch_names: Sequence[str], tables: Sequence[tuple[str, Mapping[str, np.ndarray]]]) -> np.ndarray:
    """``[C, 3]`` positions of ``ch_names``, each from the first table that has its :func:`channel_key`.

    ``tables``: ``(montage name, {upper-case name: position [3]})`` in order of preference. Channels that no
    table has raise one ``ValueError`` naming them and the montages searched.
    """
    rows, unknown = [], []
    for ch in ch_names:
        key = channel_key(ch)
        table = next((t for _, t in tables if key in t), None)
        if table is None:
            unknown.append(ch)
        else:
            rows.append(table[key])
    if unknown:
        raise ValueError(f"no position for channel(s) {unknown[:10]}{' …' if len(unknown) > 10 else ''}: not in "
                         f"montage {' or '.join(name for name, _ in tables)}")
    return np.stack(rows) if rows else np.empty((0, 3))


@lru_cache(maxsize=8)
def _position_table(montage: str) -> dict[str, np.ndarray]:
    names, xyz = montage_positions(montage)
    return {n.upper(): xyz[i] for i, n in enumerate(names)}


def montage_ch_names(montage: str = DEFAULT_MONTAGE) -> list[str]:
    """All electrode names of an MNE standard montage, in MNE's order."""
    return list(montage_positions(montage)[0])


def default_ch_names(n_channels: int, montage: str = DEFAULT_MONTAGE) -> list[str]:
    """Channel names to assume when the data gives none.

    For ``GSN-HydroCel-129`` and ``n_channels == 125`` this is the NMED layout (``E1``–``E124`` + ``Cz``);
    otherwise the first ``n_channels`` names of the montage (an error if it has fewer).
    """
    names = montage_ch_names(montage)
    if montage == DEFAULT_MONTAGE and n_channels == len(NMED_CH_NAMES):
        return list(NMED_CH_NAMES)
    if n_channels > len(names):
        raise ValueError(f"montage {montage} has {len(names)} electrodes; cannot name {n_channels} channels — "
                         f"pass ch_names or positions")
    return names[:n_channels]


def electrode_positions(ch_names: Sequence[str], montage: str = DEFAULT_MONTAGE) -> np.ndarray:
    """``[C, 3]`` float64 positions (metres) of ``ch_names`` in an MNE standard montage.

    Names match case-insensitively; ``E129``/``VREF``/``REF`` resolve to ``Cz``. Unknown names raise ``ValueError``.
    """
    return lookup_positions(ch_names, [(montage, _position_table(montage))])


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

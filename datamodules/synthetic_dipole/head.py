"""Head geometry: electrode positions of the 125 NMED rows and a dipole lead field.

The lead field is that of a current dipole in an infinite homogeneous conductor,
``v(r) = m · (r - q) / |r - q|^3``, with ``r`` the electrode position (GSN-HydroCel-129, metres), ``q`` the
dipole position inside the head and ``m`` its unit moment. It is smooth over the scalp and has a positive and a
negative pole, so one source reaches many electrodes with both signs. Each topography is scaled to a maximum
absolute value of 1 (amplitudes are set elsewhere).
"""
from __future__ import annotations

import numpy as np

from chanmusic.core.electrodes import NMED_CH_NAMES, electrode_positions

_POS: np.ndarray | None = None


def positions() -> np.ndarray:
    """``[125, 3]`` electrode positions (metres) in NMED row order (E1-E124, Cz)."""
    global _POS
    if _POS is None:
        _POS = electrode_positions(list(NMED_CH_NAMES))
    return _POS


def head_centre() -> np.ndarray:
    """Centre of the electrode cloud's bounding box (the head is not centred on the montage origin)."""
    p = positions()
    return (p.min(0) + p.max(0)) / 2.0


def random_dipole(g: np.random.Generator, min_z: float = -0.2, depth: tuple[float, float] = (0.45, 0.75),
                  toward: np.ndarray | None = None, spread: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A dipole ``(position [3], unit moment [3])`` inside the head.

    Its direction from the centre is random (z component of the unit direction >= ``min_z``), or
    ``toward`` a unit direction jittered by ``spread``; its radius is a ``depth`` fraction of the local
    electrode radius. The moment is random (radial and tangential parts both present).
    """
    c = head_centre()
    while True:
        d = g.standard_normal(3) if toward is None else np.asarray(toward) + spread * g.standard_normal(3)
        d = d / np.linalg.norm(d)
        if d[2] >= min_z:
            break
    rel = positions() - c
    radius = float(np.median(np.linalg.norm(rel, axis=1)))
    q = c + d * radius * g.uniform(*depth)
    m = g.standard_normal(3)
    return q, m / np.linalg.norm(m)


def lead_field(q: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``[125]`` topography of a dipole at ``q`` with moment ``m`` (max |value| = 1)."""
    d = positions() - np.asarray(q)[None, :]
    v = d @ np.asarray(m) / np.linalg.norm(d, axis=1) ** 3
    return v / np.abs(v).max()


def near(point: np.ndarray, width_m: float) -> np.ndarray:
    """``[125]`` weights ``exp(-distance / width_m)`` of each electrode from a point (for the eyes)."""
    return np.exp(-np.linalg.norm(positions() - np.asarray(point)[None, :], axis=1) / width_m)

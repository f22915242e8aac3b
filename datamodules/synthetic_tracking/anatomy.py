"""Where the responses come from: current dipoles in a homogeneous sphere seen by the 125 NMED electrodes.

Each subject has its own head: the auditory sources (one tangential dipole in each superior temporal plane, pointing
up and slightly forward, which gives the fronto-central maps with a polarity reversal at the mastoids seen for
auditory evoked and steady-state responses), a parieto-occipital alpha generator, and a midline frontal source for
the later flux response are each displaced by a few millimetres and rotated by a few degrees per subject, so the
spatial maps differ between people as they do in real data.

The potential of a dipole ``p`` at ``r0`` seen at ``r`` is the infinite-medium form ``p·(r − r0) / |r − r0|³`` (up to
a constant), smoothed over the scalp by a 2.5-cm Gaussian for the skull's blurring: a smooth scalp map.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chanmusic.core.electrodes import NMED_CH_NAMES, electrode_positions

from .layout import rng_for


def nmed_positions() -> np.ndarray:
    """``[125, 3]`` electrode positions (metres, head frame) of the NMED rows, centred on their sphere fit."""
    pos = electrode_positions(NMED_CH_NAMES)
    centre = _sphere_centre(pos)
    return pos - centre


def _sphere_centre(pos: np.ndarray) -> np.ndarray:
    """Least-squares centre of the sphere through the electrodes."""
    a = np.c_[2 * pos, np.ones(len(pos))]
    b = (pos ** 2).sum(1)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    return sol[:3]


def dipole_map(pos: np.ndarray, r0: np.ndarray, moment: np.ndarray) -> np.ndarray:
    """``[C]`` potential of one unit dipole at ``r0`` with direction ``moment`` (normalised to unit RMS)."""
    d = pos - r0[None, :]
    v = skull_blur(pos) @ (d @ moment / np.linalg.norm(d, axis=1) ** 3)
    v = v - v.mean()
    return v / (np.sqrt(np.mean(v ** 2)) or 1.0)


_BLUR_CACHE: dict[bytes, np.ndarray] = {}


def skull_blur(pos: np.ndarray, sigma_m: float = 0.025) -> np.ndarray:
    """``[C, C]`` row-normalised Gaussian smoothing over the scalp: the skull's spatial low-pass, approximated."""
    key = np.asarray(pos, dtype=np.float64).tobytes() + np.float64(sigma_m).tobytes()
    if key not in _BLUR_CACHE:
        _BLUR_CACHE[key] = _gaussian_blur(pos, sigma_m)
    return _BLUR_CACHE[key]


def _gaussian_blur(pos: np.ndarray, sigma_m: float) -> np.ndarray:
    d2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1)
    w = np.exp(-d2 / (2 * sigma_m ** 2))
    return w / w.sum(1, keepdims=True)


def _rotate(v: np.ndarray, rng: np.random.Generator, deg: float) -> np.ndarray:
    w = v + np.tan(np.deg2rad(deg)) * np.linalg.norm(v) * rng.standard_normal(3) / np.sqrt(3)
    return w / np.linalg.norm(w)


@dataclass(frozen=True)
class SubjectHead:
    """One subject's spatial maps (each ``[C]``, unit RMS over channels, average-referenced)."""

    auditory: np.ndarray    # sum of the two temporal dipoles: envelope TRF and beat response
    flux: np.ndarray        # auditory dipoles plus a frontal midline source: the later flux response
    alpha: np.ndarray       # parieto-occipital alpha generator
    frontal: np.ndarray     # blink field: the eyes' dipole seen from the front of the net


def subject_head(seed: int, subject: int, pos: np.ndarray | None = None) -> SubjectHead:
    """Draw a subject's source positions and orientations and return their maps."""
    pos = nmed_positions() if pos is None else pos
    rng = rng_for(seed, "head", subject)
    radius = float(np.median(np.linalg.norm(pos, axis=1)))
    jitter = lambda: 0.005 * rng.standard_normal(3)  # ~5 mm per axis
    vertex = np.array([0.0, 0.35, 1.0]) * radius  # fronto-central scalp (FCz)
    left = np.array([-0.3, 0.0, 0.0]) * radius + jitter()
    right = np.array([0.3, 0.0, 0.0]) * radius + jitter()
    weight_r = rng.uniform(0.7, 1.3)  # hemispheric asymmetry
    toward_vertex = lambda r0: _rotate(vertex - r0, rng, 15.0)  # up, forward and medial
    auditory = dipole_map(pos, left, toward_vertex(left)) + weight_r * dipole_map(pos, right, toward_vertex(right))
    frontal_src = np.array([0.0, 0.35, 0.45]) * radius + jitter()
    flux = auditory + rng.uniform(0.3, 0.8) * dipole_map(pos, frontal_src, _rotate(np.array([0.0, 0.5, 1.0]), rng, 20))
    occ = np.array([0.0, -0.6, 0.3]) * radius + jitter()
    alpha = dipole_map(pos, occ, _rotate(np.array([0.0, -0.6, 1.0]), rng, 20.0))
    eyes = np.array([0.0, 1.05, -0.1]) * radius
    frontal = dipole_map(pos, eyes, np.array([0.0, 0.2, 1.0]))
    unit = lambda v: (v - v.mean()) / np.sqrt(np.mean((v - v.mean()) ** 2))
    return SubjectHead(unit(auditory), unit(flux), unit(alpha), unit(frontal))


def random_source_maps(n: int, rng: np.random.Generator, pos: np.ndarray | None = None) -> np.ndarray:
    """``[n, C]`` maps of ``n`` randomly placed and oriented dipoles inside the head (the background's sources)."""
    pos = nmed_positions() if pos is None else pos
    radius = float(np.median(np.linalg.norm(pos, axis=1)))
    maps = np.empty((n, len(pos)))
    for i in range(n):
        direction = rng.standard_normal(3)
        r0 = direction / np.linalg.norm(direction) * radius * rng.uniform(0.3, 0.75)
        maps[i] = dipole_map(pos, r0, rng.standard_normal(3))
    return maps

"""The path from the electrodes to the release's cleaned ("Imputed") arrays, applied to a simulated recording.

Acquisition: the net records against the vertex (Cz, the last row, reads zero), a gel bridge makes two neighbouring
electrodes read their mean, and a bad contact records junk (large broadband noise and pops) instead of the scalp.
Then the release's preprocessing as NMED-T's authors describe it: a zero-phase 0.3-Hz Butterworth high-pass
(4th order run forward and back: 8th-order magnitude), a 59-61 Hz notch, a zero-phase Chebyshev type I low-pass at
50 Hz, decimation to 125 Hz, the bad rows imputed from their nearest good neighbours, and the average reference.
Every step is linear for a fixed set of bad rows, so the music response and the rest can go through it separately
(:mod:`.snr` scales the response after this path).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal

from .nuisance import ElectrodeFaults


@lru_cache(maxsize=4)
def _filters(rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hp = signal.butter(4, 0.3, btype="highpass", fs=rate, output="sos")
    notch = signal.butter(2, [59.0, 61.0], btype="bandstop", fs=rate, output="sos")
    lp = signal.cheby1(8, 0.5, 50.0, btype="lowpass", fs=rate, output="sos")
    return hp, notch, lp


def acquire(x: np.ndarray, faults: ElectrodeFaults, junk: np.ndarray | None) -> np.ndarray:
    """What the amplifier stores: the bridge, the bad contacts (``junk`` rows, or zeros) and the Cz reference."""
    y = x.copy()
    a, b = faults.bridged
    y[[a, b]] = 0.5 * (x[a] + x[b])
    bad = list(faults.bad)
    y[bad] = 0.0 if junk is None else junk
    return y - y[-1:]


def bad_contact_noise(rng: np.random.Generator, n_bad: int, n: int) -> np.ndarray:
    """``[n_bad, T]`` µV of what a bad contact records: ~60 µV white noise with occasional 300-µV steps."""
    junk = 60.0 * rng.standard_normal((n_bad, n))
    for row in junk:
        for start in rng.integers(0, n, rng.poisson(3)):
            row[start:] += rng.choice([-300.0, 300.0])
    return junk


def release_filters(x: np.ndarray, rate: float, decimation: int) -> np.ndarray:
    """High-pass, notch, low-pass (all zero-phase), then keep every ``decimation``-th sample."""
    hp, notch, lp = _filters(float(rate))
    y = signal.sosfiltfilt(hp, x, axis=-1)
    y = signal.sosfiltfilt(notch, y, axis=-1)
    y = signal.sosfiltfilt(lp, y, axis=-1)
    return np.ascontiguousarray(y[:, ::decimation])


def impute_and_rereference(x: np.ndarray, bad: tuple[int, ...], pos: np.ndarray, k: int = 4) -> np.ndarray:
    """Replace each bad row by the mean of its ``k`` nearest good rows, then subtract the mean over rows."""
    y = x.copy()
    good = np.setdiff1d(np.arange(len(pos)), bad)
    for c in bad:
        d = np.linalg.norm(pos[good] - pos[c], axis=1)
        y[c] = x[good[np.argsort(d)[:k]]].mean(0)
    return y - y.mean(0, keepdims=True)


def release(x: np.ndarray, faults: ElectrodeFaults, pos: np.ndarray, rate: float, decimation: int,
            junk: np.ndarray | None = None) -> np.ndarray:
    """The whole path: :func:`acquire`, :func:`release_filters`, :func:`impute_and_rereference`."""
    y = release_filters(acquire(x, faults, junk), rate, decimation)
    return impute_and_rereference(y, faults.bad, pos)


def release_space(maps: np.ndarray, faults: ElectrodeFaults, pos: np.ndarray) -> np.ndarray:
    """The spatial part of :func:`release` applied to ``[C, K]`` maps (no junk: a source's field on bad rows is lost):
    ``release(maps @ courses) == release_space(maps) @ release_filters(courses)``, the filters acting on time only."""
    return impute_and_rereference(acquire(maps, faults, None), faults.bad, pos)

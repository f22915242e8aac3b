"""Everything in the EEG that is not the music response, at the acquisition rate, in µV.

* **1/f background**: forty randomly placed dipoles with power-law spectra (exponent 1-1.6 per subject: the aperiodic
  component of the EEG spectrum) plus a little spatially white sensor noise.
* **Ongoing alpha** (8-12 Hz, subject's own peak): narrow-band, waxing and waning, parieto-occipital; the music
  response modulates it (:mod:`.response`), the ongoing part is background.
* **Blinks**: ~0.25 per second, 300-ms bumps of ~80 µV on the frontal (eye) field.
* **Muscle bursts**: occasional 0.5-2 s bursts of 20-100 Hz noise over the left or right temporal electrodes.
* **Line noise**: 60 Hz with a per-channel amplitude and phase (the release's notch and 50-Hz low-pass remove it).
* **Slow drift**: a per-channel random walk below 0.1 Hz (the release's 0.3-Hz high-pass removes most of it).

Subject-level electrode faults (a few bad channels, one bridged pair) are drawn in :func:`electrode_faults` and
applied by :mod:`.release` to the whole signal, as a bad contact or a gel bridge affects everything recorded there.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import SubjectHead, random_source_maps
from .layout import rng_for


def power_law_noise(rng: np.random.Generator, shape: tuple[int, int], exponent: float | np.ndarray,
                    rate: float, f_min: float = 0.1) -> np.ndarray:
    """``[n, T]`` unit-RMS noise whose power falls as ``1 / f**exponent`` (flat below ``f_min``)."""
    n, T = shape
    freqs = np.fft.rfftfreq(T, 1.0 / rate)
    exponent = np.broadcast_to(np.asarray(exponent, dtype=np.float64), (n,))[:, None]
    amp = np.maximum(freqs, f_min)[None, :] ** (-exponent / 2.0)
    spec = (rng.standard_normal((n, len(freqs))) + 1j * rng.standard_normal((n, len(freqs)))) * amp
    spec[:, 0] = 0.0
    x = np.fft.irfft(spec, n=T, axis=1)
    return x / x.std(axis=1, keepdims=True)


def band_noise(rng: np.random.Generator, n: int, rate: float, lo: float, hi: float) -> np.ndarray:
    """Unit-RMS Gaussian noise band-limited to ``[lo, hi]`` Hz (FFT mask)."""
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    spec = (rng.standard_normal(len(freqs)) + 1j * rng.standard_normal(len(freqs))) * ((freqs >= lo) & (freqs <= hi))
    x = np.fft.irfft(spec, n=n)
    return x / (x.std() or 1.0)


def ongoing_alpha(seed: int, subject: int, stimulus: int, n: int, rate: float) -> np.ndarray:
    """``[T]`` unit-RMS ongoing alpha of a subject during one song (peak frequency fixed per subject)."""
    peak = rng_for(seed, "alpha-peak", subject).uniform(9.0, 11.0)
    rng = rng_for(seed, "alpha", subject, stimulus)
    carrier = band_noise(rng, n, rate, peak - 0.75, peak + 0.75)
    waxing = 1.0 + 0.5 * band_noise(rng, n, rate, 0.05, 0.5)
    x = carrier * np.clip(waxing, 0.1, None)
    return x / x.std()


@dataclass(frozen=True)
class ElectrodeFaults:
    """A subject's faulty electrodes: rows recorded as junk (imputed by the release) and one bridged pair."""

    bad: tuple[int, ...]
    bridged: tuple[int, int]


def electrode_faults(seed: int, subject: int, pos: np.ndarray) -> ElectrodeFaults:
    """Two or three bad rows and one bridged pair of neighbours (never Cz, the recording reference)."""
    rng = rng_for(seed, "faults", subject)
    n_ch = len(pos)
    candidates = np.arange(n_ch - 1)  # Cz (last row) is the reference
    bad = tuple(sorted(int(c) for c in rng.choice(candidates, size=int(rng.integers(2, 4)), replace=False)))
    free = [c for c in candidates if c not in bad]
    a = int(rng.choice(free))
    d = np.linalg.norm(pos - pos[a], axis=1)
    d[[a, *bad, n_ch - 1]] = np.inf
    return ElectrodeFaults(bad=bad, bridged=(a, int(np.argmin(d))))


def background(seed: int, subject: int, stimulus: int, head: SubjectHead, pos: np.ndarray, n: int,
               rate: float) -> np.ndarray:
    """``[C, T]`` µV of every nuisance source (ongoing alpha included) for one recording."""
    n_ch = len(pos)
    rng_s = rng_for(seed, "subject-noise", subject)
    exponent = rng_s.uniform(1.0, 1.6)
    src_maps = random_source_maps(40, rng_s, pos)
    rng = rng_for(seed, "noise", subject, stimulus)
    src = power_law_noise(rng, (len(src_maps), n), exponent, rate)
    x = 12.0 * (src_maps.T @ src) / np.sqrt(len(src_maps))          # ~12 µV brain background
    x += 2.0 * rng.standard_normal((n_ch, n))                        # sensor noise
    x += 6.0 * np.outer(head.alpha, ongoing_alpha(seed, subject, stimulus, n, rate))
    x += _blinks(rng, head.frontal, n, rate)
    x += _muscle(rng, pos, n, rate)
    t = np.arange(n) / rate
    line_amp = rng.uniform(2.0, 10.0, n_ch)[:, None] * (1 + 0.2 * np.sin(2 * np.pi * 0.05 * t))[None, :]
    x += line_amp * np.sin(2 * np.pi * 60.0 * t[None, :] + rng.uniform(0, 2 * np.pi, n_ch)[:, None])
    drift = power_law_noise(rng, (n_ch, n), 2.0, rate, f_min=0.01) * rng.uniform(20.0, 50.0, n_ch)[:, None]
    return x + drift


def _blinks(rng: np.random.Generator, frontal: np.ndarray, n: int, rate: float) -> np.ndarray:
    course = np.zeros(n)
    n_blinks = rng.poisson(0.25 * n / rate)
    width = int(0.3 * rate)
    shape = np.hanning(width)
    for start in rng.integers(0, max(1, n - width), n_blinks):
        course[start:start + width] += rng.uniform(50.0, 110.0) * shape
    field = np.clip(frontal, 0.0, None)
    return np.outer(field / (field.max() or 1.0), course)


def _muscle(rng: np.random.Generator, pos: np.ndarray, n: int, rate: float) -> np.ndarray:
    out = np.zeros((len(pos), n))
    radius = np.linalg.norm(pos, axis=1).max()
    hi = min(100.0, 0.45 * rate)
    for _ in range(rng.poisson(0.05 * n / rate)):
        side = rng.choice([-1.0, 1.0])
        centre = np.array([side * 0.85, 0.1, -0.25]) * radius  # over the temporalis
        weight = np.exp(-((pos - centre) ** 2).sum(1) / (2 * (0.03) ** 2))
        length = int(rng.uniform(0.5, 2.0) * rate)
        start = int(rng.integers(0, max(1, n - length)))
        burst = band_noise(rng, length, rate, 20.0, hi) * np.hanning(length)
        out[:, start:start + length] += rng.uniform(10.0, 30.0) * np.outer(weight, burst) \
            * (1 + 0.3 * rng.standard_normal((len(pos), 1)))
    return out

"""The music-evoked response: what one subject's cortex adds to the EEG while a song plays.

Four components, each a time course times the subject's spatial map (:mod:`.anatomy`), summed with subject-specific
weights:

* **Envelope tracking** — the compressed broadband envelope convolved with a temporal response function of P1-N1-P2
  shape (peaks near 50, 100 and 180 ms), shifted by a subject-specific lag (±25 ms) and with subject-specific
  component amplitudes, on the fronto-central auditory map.
* **Spectral-flux tracking** — the flux convolved with a later, broader TRF (near 70, 140 and 250 ms) on the auditory
  map plus a frontal midline source.
* **Beat-locked response** — a response to every beat of the metrical grid (downbeats stronger: duple metre), whether
  or not a drum sounds there, plus a steady-state oscillation at the beat rate with a subject-specific phase: the
  "frequency tagging" of beat and metre, peaks at the beat frequency and its harmonics.
* **Alpha modulation** — the subject's ongoing parieto-occipital alpha (8-12 Hz) is suppressed in louder, denser
  passages (the slow loudness with a 1-s time constant, delayed by half a second): only the *change* the music
  causes belongs to the response; the ongoing alpha itself is background.

Everything is linear in one overall scale, which :mod:`.snr` sets from the SNR knob after the release's filters.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import SubjectHead
from .features import slow_loudness
from .layout import rng_for
from .music import SongPlan


@dataclass(frozen=True)
class SubjectTuning:
    """A subject's response parameters (drawn once per subject, the same for every song)."""

    lag_s: float                 # shift of both TRFs
    env_amps: tuple[float, float, float]   # P1, N1, P2 amplitudes
    flux_amps: tuple[float, float, float]
    weights: dict                # component -> power weight
    beat_phase: float            # phase of the steady-state beat oscillation (rad)
    alpha_depth: float           # fraction of alpha amplitude the music can remove


def subject_tuning(seed: int, subject: int) -> SubjectTuning:
    rng = rng_for(seed, "tuning", subject)
    jit = lambda: float(rng.uniform(0.7, 1.3))
    return SubjectTuning(
        lag_s=float(rng.uniform(-0.025, 0.025)),
        env_amps=(0.5 * jit(), -1.0 * jit(), 0.8 * jit()),
        flux_amps=(0.4 * jit(), -0.8 * jit(), 0.7 * jit()),
        weights={"envelope": 1.0 * jit(), "flux": 0.7 * jit(), "beat": 0.6 * jit(), "alpha": 0.5 * jit()},
        beat_phase=float(rng.uniform(0, 2 * np.pi)),
        alpha_depth=float(rng.uniform(0.2, 0.4)),
    )


def trf_kernel(rate: float, lag_s: float, latencies_s: tuple[float, ...], widths_s: tuple[float, ...],
               amps: tuple[float, ...], length_s: float = 0.5) -> np.ndarray:
    """A causal TRF sampled at ``rate``: a sum of Gaussian bumps at ``latencies + lag`` (all latencies stay > 10 ms)."""
    t = np.arange(int(length_s * rate)) / rate
    k = np.zeros_like(t)
    for lat, w, a in zip(latencies_s, widths_s, amps):
        k += a * np.exp(-0.5 * ((t - max(lat + lag_s, 0.01)) / w) ** 2)
    return k


def _causal_conv(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve

    return fftconvolve(x, kernel)[: len(x)]


def _unit(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    sd = x.std()
    return x / sd if sd > 0 else x


def beat_course(plan: SongPlan, n: int, rate: float, phase: float, lag_s: float) -> np.ndarray:
    """The beat-locked time course: an evoked wave at every beat (downbeats × 1.5) plus a beat-rate oscillation."""
    pulses = np.zeros(n)
    idx = np.round((plan.beat_times + lag_s) * rate).astype(int)
    keep = (idx >= 0) & (idx < n)
    pulses[idx[keep]] = np.where(plan.downbeat[keep], 1.5, 1.0)
    t = np.arange(int(0.3 * rate)) / rate
    evoked = np.sin(2 * np.pi * t / 0.3) * np.hanning(len(t))
    time = np.arange(n) / rate
    start = plan.beat_times[0]
    ssep = np.sin(2 * np.pi * plan.bpm / 60.0 * (time - start) + phase) * (time >= start)
    return _unit(_causal_conv(pulses, evoked)) + 0.5 * _unit(ssep)


def music_response(features: dict, plan: SongPlan, head: SubjectHead, tuning: SubjectTuning,
                   alpha_carrier: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """The response as ``maps [C, 3]`` (auditory, flux, alpha) and ``courses [3, T]`` at ``rate``: ``maps @ courses``
    is the ``[C, T]`` response (arbitrary overall scale). Kept factored so the release's filters run on three
    time courses instead of 125 channels (they act on time only, the imputation and reference on space only)."""
    n = len(features["envelope"])
    env = _causal_conv(features["envelope"], trf_kernel(
        rate, tuning.lag_s, (0.05, 0.10, 0.18), (0.012, 0.025, 0.04), tuning.env_amps))
    flux = _causal_conv(features["flux"], trf_kernel(
        rate, tuning.lag_s, (0.07, 0.14, 0.25), (0.02, 0.035, 0.06), tuning.flux_amps))
    beat = beat_course(plan, n, rate, tuning.beat_phase, tuning.lag_s)
    delay = int(0.5 * rate)
    loud = slow_loudness(features["envelope"], rate)
    loud = np.r_[np.zeros(delay), loud[: n - delay]]
    # the music lowers the alpha amplitude in loud passages: carrier × (1 − depth·loudness) − carrier
    alpha_change = -tuning.alpha_depth * loud * alpha_carrier
    alpha_change = alpha_change / (alpha_carrier.std() * tuning.alpha_depth or 1.0)
    w = {k: np.sqrt(v) for k, v in tuning.weights.items()}
    courses = np.stack([w["envelope"] * _unit(env) + w["beat"] * _unit(beat), w["flux"] * _unit(flux),
                        w["alpha"] * alpha_change])
    return np.stack([head.auditory, head.flux, head.alpha], axis=1), courses

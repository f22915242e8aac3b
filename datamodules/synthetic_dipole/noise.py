"""The noise of one recording (stream ``(seed, NOISE, subject, stimulus)``): everything that is not music-driven.

Parts, summed:

* **background** — 24 dipoles at random places in the head (their places fixed per subject, drawn from the
  subject's stream), each with an independent 1/f^β time course (β per subject, 1.0–1.8; spectrum shaped in
  the Fourier domain, flat below 0.5 Hz), mixed through the dipole lead field; scaled so that its RMS over
  channels and time is ``noise_rms_uv`` × U(0.8, 1.25) for this recording.
* **sensor noise** — white, independent per channel, RMS 0.2 × ``noise_rms_uv`` × U(0.5, 1.5) per channel.
* **alpha** — the subject's alpha generator (:mod:`.response`) at its own frequency: a narrow-band (±1 Hz)
  carrier ``c(t)`` of unit variance, times ``b`` = U(0.3, 0.8) × ``noise_rms_uv``. The same ``c(t)`` is what
  the music modulates.
* **eye blinks** — Poisson times at the subject's rate (0.1–0.4 /s), half-cosine bumps of 0.2–0.4 s, amplitude
  ``blink_uv`` at the electrode nearest the eyes, decaying as exp(-distance / 4 cm) from two points below the
  most frontal electrodes.
* **drift** — per channel, three slow sinusoids (0.05–0.5 Hz, 2–6 µV each, random phases): electrode
  potentials wandering; the release's high-pass (below) removes most of what lies under 0.3 Hz.

All of the above then goes through the release's high-pass (:func:`release_highpass`: zero-phase Butterworth at
``highpass_hz`` = 0.3 Hz, order 4 forward + backward = 8, as the NMED-T paper reports), as the music-driven
signal does in the writer. Added after it:

* **line noise** — a residual 60 Hz sinusoid (what the release's 59–61 Hz notch leaves), amplitude U(``line_uv``)
  per channel, slowly waxing and waning (±30 % at 0.05 Hz).

The per-channel gain (U(0.85, 1.15), the recording's signature) and DC offsets (U(-25, 25) µV) are applied by
the writer to signal and noise together.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfiltfilt

from .config import NOISE, SFREQ, SUBJECT, DipoleConfig, rng
from .head import lead_field, near, positions, random_dipole
from .response import Subject

N_BACKGROUND = 24


def release_highpass(x: np.ndarray, hz: float | None) -> np.ndarray:
    """``x`` ``[..., T]`` high-passed at ``hz`` (0.3: as the release was; zero-phase, 8th order in effect);
    ``None`` returns ``x`` unfiltered."""
    if hz is None:
        return x
    sos = butter(4, float(hz), btype="highpass", fs=SFREQ, output="sos")
    return sosfiltfilt(sos, x, axis=-1)


def _pink(g: np.random.Generator, n_series: int, T: int, exponent: float) -> np.ndarray:
    """``[n_series, T]`` unit-variance noise with power spectrum ∝ 1/f^exponent (flat below 0.5 Hz)."""
    spec = np.fft.rfft(g.standard_normal((n_series, T)), axis=1)
    f = np.fft.rfftfreq(T, 1.0 / SFREQ)
    spec *= 1.0 / np.maximum(f, 0.5) ** (exponent / 2.0)
    x = np.fft.irfft(spec, n=T, axis=1)
    return x / x.std(axis=1, keepdims=True)


def alpha_carrier(g: np.random.Generator, T: int, hz: float) -> np.ndarray:
    """``[T]`` unit-variance narrow-band noise, hz ± 1 Hz (smooth band edges)."""
    spec = np.fft.rfft(g.standard_normal(T))
    f = np.fft.rfftfreq(T, 1.0 / SFREQ)
    spec *= np.exp(-0.5 * ((f - hz) / 0.6) ** 2)
    x = np.fft.irfft(spec, n=T)
    return x / x.std()


def background_topographies(seed: int, subject: int) -> np.ndarray:
    """``[N_BACKGROUND, 125]`` lead fields of the subject's background dipoles."""
    g = rng(seed, SUBJECT, subject, 1)
    return np.stack([lead_field(*random_dipole(g, min_z=-0.5, depth=(0.3, 0.8))) for _ in range(N_BACKGROUND)])


def eye_topography() -> np.ndarray:
    """``[125]`` blink topography: max 1 at the electrode nearest the eyes."""
    p = positions()
    front = p[np.argsort(-p[:, 1])[:2]].mean(0)
    w = sum(near(front + np.array([dx, 0.01, -0.03]), 0.04) for dx in (-0.03, 0.03))
    return w / w.max()


def recording_noise(cfg: DipoleConfig, subj: Subject, stimulus: int, bg_topo: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(noise [125, T] µV, alpha carrier [T], facts)`` of ``subj`` hearing ``stimulus``."""
    g = rng(cfg.seed, NOISE, subj.id, stimulus)
    T = cfg.n_samples
    t = np.arange(T) / SFREQ
    C = bg_topo.shape[1]
    bg = bg_topo.T @ _pink(g, N_BACKGROUND, T, subj.background_exponent)
    rms = cfg.noise_rms_uv * float(g.uniform(0.8, 1.25))
    noise = bg * (rms / np.sqrt((bg ** 2).mean()))
    noise += (0.2 * cfg.noise_rms_uv * g.uniform(0.5, 1.5, size=C))[:, None] * g.standard_normal((C, T))
    carrier = alpha_carrier(g, T, subj.alpha_hz)
    b = float(g.uniform(0.3, 0.8)) * cfg.noise_rms_uv
    noise += b * subj.alpha_topo[:, None] * carrier[None, :]
    # eye blinks
    n_blinks = int(g.poisson(subj.blink_rate * T / SFREQ))
    blinks = np.zeros(T)
    for onset in g.uniform(0, T / SFREQ, size=n_blinks):
        width = float(g.uniform(0.2, 0.4))
        i0, n = int(onset * SFREQ), max(2, int(width * SFREQ))
        bump = np.sin(np.pi * np.arange(n) / (n - 1)) * g.uniform(*cfg.blink_uv)
        blinks[i0:i0 + n] += bump[: max(0, min(n, T - i0))]
    noise += eye_topography()[:, None] * blinks[None, :]
    # slow drift
    for _ in range(3):
        f = g.uniform(0.05, 0.5, size=(C, 1))
        noise += g.uniform(2.0, 6.0, size=(C, 1)) * np.sin(2 * np.pi * f * t[None, :] + g.uniform(0, 6.3, (C, 1)))
    noise = release_highpass(noise, cfg.highpass_hz)
    # residual line noise
    amp = g.uniform(*cfg.line_uv, size=C)[:, None] * (1.0 + 0.3 * np.sin(2 * np.pi * 0.05 * t + g.uniform(0, 6.3)))
    noise += amp * np.sin(2 * np.pi * 60.0 * t[None, :] + g.uniform(0, 2 * np.pi, size=(C, 1)))
    facts = {"background_rms_uv": round(rms, 3), "alpha_uv": round(b, 3), "blinks": n_blinks}
    return noise, carrier, facts

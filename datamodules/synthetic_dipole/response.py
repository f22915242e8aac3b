"""The music-driven signal: each subject's own dipoles, feature families, lags and signs.

A subject (stream ``(seed, SUBJECT, id)``) has

* ``n_sources`` **phase-locked dipoles** anywhere in the upper head (direction z >= -0.3, so temporal,
  central, frontal or parietal — a different electrode subset and sign pattern for every subject). Each
  dipole follows 1–3 of the families ``flux`` / ``loudness`` / ``pitch``, each through its own kernel and
  sign: flux through a biphasic kernel (a positive gamma bump peaking at 60–180 ms minus 0.6 × one peaking
  80–150 ms later, an N1/P2-like shape), loudness through a gamma bump peaking at 120–400 ms, pitch through
  one peaking at 200–500 ms. Dipole amplitudes differ (0.6–1.2).
* one **induced source**: the subject's alpha generator (a posterior dipole, 8.5–11.5 Hz). Its amplitude
  is modulated by ``density`` seen through a gamma kernel peaking at 300–700 ms, with a sign per subject
  (mostly desynchronisation, 25 % synchronisation). The carrier is the recording's own alpha rhythm
  (drawn with the noise), so only the modulation ``g(t) · c(t)`` is music-driven; the unmodulated alpha
  ``b · c(t)`` is part of the noise. Its share of the music-driven power is 0.3–0.6.

Each family's filtered feature is scaled to unit variance before its signed weight (0.5–1 in size), so a slow
family (pitch, loudness) does not drown a fast one (flux) by its larger low-frequency power; each dipole's drive
is then scaled to unit variance before its amplitude, so the global scale of the music-driven signal is set
only by the SNR (see :mod:`.snr`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import fftconvolve

from .config import SFREQ, SUBJECT, rng
from .head import lead_field, random_dipole

KERNEL_S = 1.0  # kernel support (s)
PHASE_LOCKED = ("flux", "loudness", "pitch")


def gamma_kernel(peak_s: float, shape: float = 4.0) -> np.ndarray:
    """``[KERNEL_S · SFREQ]`` causal gamma bump ``t^(k-1) e^(-t/θ)`` peaking at ``peak_s``, unit L2."""
    t = np.arange(int(KERNEL_S * SFREQ)) / SFREQ
    theta = peak_s / (shape - 1.0)
    h = t ** (shape - 1.0) * np.exp(-t / theta)
    return h / np.linalg.norm(h)


@dataclass
class Subject:
    """One subject's response model (all of it drawn from the subject's own stream)."""

    id: int
    topo: np.ndarray                      # [K, 125] phase-locked dipole topographies
    dipoles: list[dict]                   # per dipole: position, moment, amplitude, {family: (sign, peak_s)}
    kernels: list[dict[str, tuple[float, np.ndarray]]]  # per dipole: {family: (signed weight, kernel)}
    amp: np.ndarray                       # [K]
    alpha_topo: np.ndarray                # [125]
    alpha_hz: float
    alpha_kernel: np.ndarray
    alpha_sign: float
    induced_share: float
    blink_rate: float
    background_exponent: float
    meta: dict = field(default_factory=dict)


def make_subject(seed: int, subject: int, n_sources: int) -> Subject:
    g = rng(seed, SUBJECT, subject)
    topo, dipoles, kernels, amps = [], [], [], []
    for _ in range(n_sources):
        q, m = random_dipole(g, min_z=-0.3)
        fams = [f for f in PHASE_LOCKED if g.random() < 0.6] or [PHASE_LOCKED[int(g.integers(3))]]
        ks, info = {}, {}
        for f in fams:
            sign = float(g.choice([-1.0, 1.0])) * float(g.uniform(0.5, 1.0))
            if f == "flux":
                p1 = float(g.uniform(0.06, 0.18))
                p2 = p1 + float(g.uniform(0.08, 0.15))
                h = gamma_kernel(p1, 5.0) - 0.6 * gamma_kernel(p2, 5.0)
                h = h / np.linalg.norm(h)
                peak = p1
            else:
                peak = float(g.uniform(0.12, 0.40) if f == "loudness" else g.uniform(0.20, 0.50))
                h = gamma_kernel(peak)
            ks[f] = (sign, h)
            info[f] = {"weight": round(sign, 4), "peak_s": round(peak, 4)}
        amp = float(g.uniform(0.6, 1.2))
        topo.append(lead_field(q, m))
        kernels.append(ks)
        amps.append(amp)
        dipoles.append({"position_m": np.round(q, 5).tolist(), "moment": np.round(m, 4).tolist(),
                        "amplitude": round(amp, 4), "families": info})
    qa, ma = random_dipole(g, toward=np.array([0.0, -1.0, 0.2]), spread=0.25, depth=(0.5, 0.7))
    alpha_hz = float(g.uniform(8.5, 11.5))
    alpha_peak = float(g.uniform(0.3, 0.7))
    alpha_sign = -1.0 if g.random() < 0.75 else 1.0
    share = float(g.uniform(0.3, 0.6))
    s = Subject(id=subject, topo=np.stack(topo), dipoles=dipoles, kernels=kernels, amp=np.array(amps),
                alpha_topo=lead_field(qa, ma), alpha_hz=alpha_hz, alpha_kernel=gamma_kernel(alpha_peak, 3.0),
                alpha_sign=alpha_sign, induced_share=share, blink_rate=float(g.uniform(0.1, 0.4)),
                background_exponent=float(g.uniform(1.0, 1.8)))
    s.meta = {"subject": subject, "phase_locked_dipoles": dipoles,
              "induced": {"alpha_hz": round(alpha_hz, 3), "density_peak_s": round(alpha_peak, 4),
                          "sign": alpha_sign, "share_of_music_power": round(share, 4),
                          "position_m": np.round(qa, 5).tolist(), "moment": np.round(ma, 4).tolist()},
              "blink_rate_hz": round(s.blink_rate, 4), "background_exponent": round(s.background_exponent, 4)}
    return s


def _causal(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    return fftconvolve(x, h, mode="full")[: len(x)]


def _unit(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    return x / (x.std() + 1e-12)


def music_signal(subj: Subject, feats: dict[str, np.ndarray], carrier: np.ndarray) -> np.ndarray:
    """``[125, T]`` music-driven signal (arbitrary scale) of ``subj`` hearing a song with features ``feats``.

    ``carrier`` ``[T]`` is the recording's unit-variance alpha rhythm (from :mod:`.noise`).
    """
    T = len(carrier)
    locked = np.zeros((subj.topo.shape[1], T))
    for k, ks in enumerate(subj.kernels):
        drive = sum(w * _unit(_causal(feats[f][:T], h)) for f, (w, h) in ks.items())
        locked += subj.amp[k] * subj.topo[k][:, None] * _unit(drive)[None, :]
    mod = np.tanh(_unit(_causal(feats["density"][:T], subj.alpha_kernel))) * subj.alpha_sign
    induced = subj.alpha_topo[:, None] * (mod * carrier)[None, :]
    # mix so that the induced part carries `induced_share` of the summed channel power
    p_locked, p_ind = float((locked ** 2).mean()), float((induced ** 2).mean())
    a = np.sqrt(subj.induced_share / (1 - subj.induced_share) * p_locked / max(p_ind, 1e-12))
    return locked + a * induced

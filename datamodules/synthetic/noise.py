"""The demo's noise model: electrode geometry, spectrally shaped Gaussian noise (pink background, bands, the
release's 0.3-50 Hz band) and each subject's session layout (:class:`Session`, :func:`draw_session`);
see ``docs/synthetic.md`` for the design."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from chanmusic.core.electrodes import NMED_CH_NAMES, electrode_positions

from ..nmed import NMED_N_CHANNELS
from ..registry import dataset_code
from . import seeds

NOMINAL_NOISE_UV = 20.0


@lru_cache(maxsize=1)
def electrode_xyz() -> np.ndarray:
    """Electrode positions [125, 3] (m; +x right, +y nose, +z up) from the HydroCel-129 montage."""
    return electrode_positions(NMED_CH_NAMES, "GSN-HydroCel-129")


def gauss_topo(pos: np.ndarray, centre: np.ndarray, width: float) -> np.ndarray:
    """Gaussian scalp topography ``[125]`` of width ``width`` (m) around ``centre`` ``[3]``."""
    d2 = ((pos - centre) ** 2).sum(axis=1)
    return np.exp(-d2 / (2.0 * width ** 2))


def shaped_noise(rng: np.random.Generator, rows: int, n: int, sfreq: float,
                 shape: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Gaussian noise [rows, n] with amplitude spectrum ``shape(f)``, each row scaled to unit rms.

    Drawn directly in the frequency domain (random complex coefficients on the bins where ``shape`` is
    not negligible), which is cheap for narrow bands.
    """
    import scipy.fft

    amp = np.asarray(shape(np.fft.rfftfreq(n, 1.0 / sfreq)), dtype=np.float64)
    keep = np.flatnonzero(amp > 1e-4 * amp.max())
    spec = np.zeros((rows, amp.size), dtype=np.complex64)
    coef = rng.standard_normal((rows, keep.size, 2), dtype=np.float32)
    spec[:, keep] = (coef[..., 0] + 1j * coef[..., 1]) * amp[keep].astype(np.float32)
    x = scipy.fft.irfft(spec, n=n, axis=1)
    rms = np.sqrt((x.astype(np.float64) ** 2).mean(axis=1, keepdims=True))
    return x / np.where(rms > 0, rms, 1.0).astype(np.float32)


def release_band(f: np.ndarray) -> np.ndarray:
    """Amplitude response of the release's 0.3 Hz high-pass and 50 Hz low-pass."""
    hp = (f / 0.3) ** 4 / (1.0 + (f / 0.3) ** 4)
    lp = 1.0 / np.sqrt(1.0 + (f / 50.0) ** 16)
    return hp * lp


def pink(f: np.ndarray) -> np.ndarray:
    """Amplitude response of pink (1/f power) noise in the release's band."""
    return release_band(f) / np.sqrt(np.maximum(f, 0.3))


def band_shape(lo: float, hi: float) -> Callable[[np.ndarray], np.ndarray]:
    """Gaussian amplitude response centred on the band ``lo``-``hi`` Hz (for :func:`shaped_noise`)."""
    def shape(f):
        c, w = (lo + hi) / 2, (hi - lo) / 2
        return np.exp(-0.5 * ((f - c) / (0.5 * w)) ** 2)
    return shape


@dataclass
class Session:
    """One subject's noise layout: source mixing, alpha, blinks, line residual and sensor levels."""

    mixing: np.ndarray          # [125, L] latent pink sources -> channels (µV)
    indep_uv: np.ndarray        # [125]
    alpha_hz: float
    alpha_topo: np.ndarray      # [125] µV at burst peak
    blink_topo: np.ndarray      # [125] µV per blink
    blink_rate_hz: float
    line_topo: np.ndarray       # [125]
    sensor_uv: np.ndarray       # [125]
    noisy_channel: int


def draw_session(seed: int, dataset: str, subject: int) -> Session:
    """The noise layout of ``subject``'s session (the same for every recording of that subject)."""
    ss = np.random.SeedSequence([seeds.SESSION, int(seed), dataset_code(dataset), int(subject)])
    r = [np.random.default_rng(s) for s in ss.spawn(8)]
    pos = electrode_xyz()
    n_lat = 16
    centres = pos[r[0].choice(NMED_N_CHANNELS, n_lat, replace=False)] + r[0].normal(0, 0.01, (n_lat, 3))
    widths = r[0].uniform(0.03, 0.06, n_lat)
    mixing = np.stack([gauss_topo(pos, c, w) for c, w in zip(centres, widths)], axis=1)
    mixing *= r[0].lognormal(0.0, 0.3, n_lat)
    row = np.sqrt((mixing ** 2).sum(axis=1, keepdims=True))
    mixing = mixing / row * 14.0 * r[1].uniform(0.8, 1.2, (NMED_N_CHANNELS, 1))
    indep = 8.0 * r[1].uniform(0.7, 1.3, NMED_N_CHANNELS)
    alpha_c = np.array([0.0, -0.08, 0.03]) + r[2].normal(0, 0.012, 3)
    alpha_topo = r[2].uniform(8.0, 14.0) * gauss_topo(pos, alpha_c, r[2].uniform(0.04, 0.06))
    eyes = np.array([[-0.03, 0.10, -0.04], [0.03, 0.10, -0.04]])
    blink_topo = r[3].uniform(80.0, 150.0) * np.maximum(
        gauss_topo(pos, eyes[0], 0.035), gauss_topo(pos, eyes[1], 0.035))
    line_c = pos[r[4].integers(NMED_N_CHANNELS)]
    line_topo = 0.4 + gauss_topo(pos, line_c, 0.06)
    return Session(
        mixing=mixing, indep_uv=indep, alpha_hz=float(r[2].uniform(9.0, 11.0)),
        alpha_topo=alpha_topo, blink_topo=blink_topo, blink_rate_hz=float(r[3].uniform(12, 20)) / 60.0,
        line_topo=line_topo, sensor_uv=r[5].uniform(1.0, 2.0, NMED_N_CHANNELS),
        noisy_channel=int(r[6].integers(NMED_N_CHANNELS)),
    )

"""The music response model: which electrodes respond and how (:class:`ResponseMap`, fixed per dataset seed,
perturbed per subject), response kernels and the filtering helpers; see :mod:`datamodules.synthetic`."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..nmed import NMED_N_CHANNELS
from . import seeds
from .features import FEATURE_NAMES
from .noise import NOMINAL_NOISE_UV

# how much each of FEATURE_NAMES weighs in a response mix (envelope and onsets most)
FEATURE_EMPHASIS = np.array([1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5])
# the ongoing rhythms whose amplitude the music modulates (induced response), Hz
BANDS = {"alpha": (8.0, 12.0), "beta": (15.0, 25.0), "gamma": (30.0, 45.0)}


def kernel(sfreq: float, lag_s: float, tau_s: float, rebound: float) -> np.ndarray:
    """Causal response kernel: delay, gamma(2) smoothing, optional later opposite-sign lobe."""
    t = np.arange(int(math.ceil((lag_s + 12 * tau_s) * sfreq)) + 1) / sfreq - lag_s
    tt = np.clip(t, 0.0, None)
    g1 = (tt / tau_s) * np.exp(-tt / tau_s) * (t >= 0)
    t2 = 2.5 * tau_s
    g2 = (tt / t2) * np.exp(-tt / t2) * (t >= 0)
    k = g1 / g1.sum() - rebound * g2 / g2.sum()
    return k


@dataclass(frozen=True)
class ResponseMap:
    """Which electrodes respond and how; fixed per dataset seed (see :mod:`datamodules.synthetic`)."""

    pl_channels: np.ndarray      # [P] electrode rows with a phase-locked response
    pl_weights: np.ndarray       # [P, F] signed feature mix
    pl_lag_s: np.ndarray         # [P]
    pl_tau_s: np.ndarray         # [P]
    pl_rebound: np.ndarray       # [P]
    pl_amp_uv: np.ndarray        # [P] response rms at response_gain=1
    ind_channels: np.ndarray     # [I] electrode rows with an induced response
    ind_band: tuple[str, ...]    # [I] alpha | beta | gamma
    ind_weights: np.ndarray      # [I, F]
    ind_lag_s: np.ndarray        # [I]
    ind_tau_s: np.ndarray        # [I]
    ind_depth: np.ndarray        # [I] modulation depth at response_gain=1
    ind_carrier_uv: np.ndarray   # [I] rms of the ongoing rhythm (present with or without music)

    @classmethod
    def draw(cls, seed: int, phase_locked_fraction: float = 0.5, induced_fraction: float = 0.3
             ) -> "ResponseMap":
        rng = np.random.default_rng([seeds.MAP, int(seed)])
        n_f = len(FEATURE_NAMES)

        def mix(k):
            w = np.abs(rng.standard_normal((k, n_f))) * FEATURE_EMPHASIS
            w /= w.sum(axis=1, keepdims=True)
            return w * rng.choice([-1.0, 1.0], size=(k, 1))

        p = int(round(phase_locked_fraction * NMED_N_CHANNELS))
        i = int(round(induced_fraction * NMED_N_CHANNELS))
        pl = np.sort(rng.choice(NMED_N_CHANNELS, size=p, replace=False))
        pl_w = mix(p)
        pl_lag = rng.uniform(0.05, 0.25, p)
        pl_tau = rng.uniform(0.015, 0.06, p)
        pl_reb = rng.uniform(0.0, 0.7, p) * (rng.random(p) < 0.6)
        pl_amp = NOMINAL_NOISE_UV * 10 ** (rng.uniform(-22.0, -12.0, p) / 20.0)
        ind = np.sort(rng.choice(NMED_N_CHANNELS, size=i, replace=False))
        bands = tuple(str(b) for b in rng.choice(list(BANDS), size=i, p=[0.4, 0.35, 0.25]))
        return cls(
            pl, pl_w, pl_lag, pl_tau, pl_reb, pl_amp,
            ind, bands, mix(i), rng.uniform(0.1, 0.3, i), rng.uniform(0.1, 0.3, i),
            rng.uniform(0.2, 0.4, i), rng.uniform(3.0, 6.0, i),
        )

    def for_subject(self, seed: int, subject: int) -> "ResponseMap":
        """The map with a modest per-subject perturbation (gains, weights, lags)."""
        rng = np.random.default_rng([seeds.MAP_SUBJ, int(seed), int(subject)])
        p, i = len(self.pl_channels), len(self.ind_channels)
        return ResponseMap(
            self.pl_channels,
            self.pl_weights * (1.0 + 0.2 * rng.standard_normal(self.pl_weights.shape)),
            np.clip(self.pl_lag_s + rng.uniform(-0.01, 0.01, p), 0.04, 0.26),
            self.pl_tau_s, self.pl_rebound,
            self.pl_amp_uv * rng.lognormal(0.0, 0.2, p),
            self.ind_channels, self.ind_band,
            self.ind_weights * (1.0 + 0.2 * rng.standard_normal(self.ind_weights.shape)),
            np.clip(self.ind_lag_s + rng.uniform(-0.01, 0.01, i), 0.05, 0.35),
            self.ind_tau_s,
            self.ind_depth * rng.lognormal(0.0, 0.2, i),
            self.ind_carrier_uv * rng.lognormal(0.0, 0.2, i),
        )


def causal_filter(x: np.ndarray, kernels: list[np.ndarray]) -> np.ndarray:
    """Row ``r`` of ``x`` ``[R, T]`` convolved with ``kernels[r]``, cut to ``T`` samples (causal)."""
    from scipy.signal import fftconvolve

    n = x.shape[1]
    length = max(k.size for k in kernels)
    kk = np.zeros((len(kernels), length))
    for r, k in enumerate(kernels):
        kk[r, :k.size] = k
    return fftconvolve(x, kk, mode="full", axes=1)[:, :n]


def zscore_rows(x: np.ndarray) -> np.ndarray:
    """Each row of ``x`` ``[R, T]`` centred and scaled to unit standard deviation (constant rows stay 0)."""
    x = x - x.mean(axis=1, keepdims=True)
    sd = x.std(axis=1, keepdims=True)
    return x / np.where(sd > 0, sd, 1.0)

"""The SNR, defined once and used both to set and to measure it.

For a recording with music-driven signal ``s`` ``[C, T]`` and noise ``n`` ``[C, T]`` (everything else, see
:mod:`.noise`), with ``P_x(c)`` the variance over time of channel ``c`` (mean square after removing the
channel's mean):

* responding channels ``R = {c : P_s(c) >= rho · max_c P_s(c)}`` (``rho`` = ``responding_fraction``, 0.25);
* ``SNR = 10 · log10( mean_{c in R} P_s(c) / P_n(c) )`` — the per-channel power ratio, averaged over the
  responding channels, in dB.

``s`` and ``n`` are taken as written, i.e. after the per-channel gain of the recording (its signature; DC
offsets are removed by the variance). The writer scales ``s`` by one number per recording so that the SNR is
exactly the one asked for; writing the same seed with ``music=False`` gives ``n`` alone, so the SNR can be
measured from two written files (``s`` = difference).
"""
from __future__ import annotations

import numpy as np


def responding(signal: np.ndarray, fraction: float) -> np.ndarray:
    """``[C]`` bool: channels whose music-driven power is at least ``fraction`` × the largest."""
    p = signal.var(axis=1)
    return p >= fraction * p.max()


def measure_snr_db(signal: np.ndarray, noise: np.ndarray, fraction: float) -> float:
    """The SNR (dB) of ``signal`` ``[C, T]`` in ``noise`` ``[C, T]`` as defined above."""
    r = responding(signal, fraction)
    return float(10.0 * np.log10(np.mean(signal[r].var(axis=1) / noise[r].var(axis=1))))


def scale_for(signal: np.ndarray, noise: np.ndarray, target_db: float, fraction: float) -> float:
    """The factor ``a`` with ``measure_snr_db(a · signal, noise) == target_db`` (R does not change with ``a``)."""
    return float(10.0 ** ((target_db - measure_snr_db(signal, noise, fraction)) / 20.0))

"""The SNR knob and its measurement.

**Definition.** On a recording as released (after :mod:`.release`), the *responding channels* are those whose music
response power is at least half the largest channel's. The SNR is the music response's power over the power of
everything else (background, alpha, artefacts, residual line noise), summed over the responding channels, in dB.
The generator scales the response of each recording to hit the knob exactly before the per-recording gain (which
scales both parts alike).

**Measurement.** :func:`measure_snr` needs no generator internals: it reads a music set and the no-music set written
with the same seed (same background, response off) through :func:`datamodules.nmed.read_recordings`, takes their
difference as the response and the no-music recording as the rest, and applies the definition.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def responding_channels(music: np.ndarray, fraction: float = 0.5) -> np.ndarray:
    """Indices of the rows of ``music`` ``[C, T]`` whose power is at least ``fraction`` of the largest row's."""
    power = np.mean(np.asarray(music, dtype=np.float64) ** 2, axis=1)
    return np.flatnonzero(power >= fraction * power.max())


def snr_db(music: np.ndarray, other: np.ndarray, channels: np.ndarray | None = None) -> float:
    """``10·log10`` of the music power over the other power, summed over ``channels`` (default: responding)."""
    channels = responding_channels(music) if channels is None else channels
    m = np.mean(np.asarray(music, dtype=np.float64)[channels] ** 2)
    o = np.mean(np.asarray(other, dtype=np.float64)[channels] ** 2)
    return float(10.0 * np.log10(m / o))


def scale_for_snr(music: np.ndarray, other: np.ndarray, target_db: float) -> float:
    """The factor ``k`` such that ``snr_db(k·music, other) == target_db``."""
    return float(10.0 ** ((target_db - snr_db(music, other)) / 20.0))


def measure_snr(music_root: str | Path, none_root: str | Path) -> dict:
    """Realised SNR of a written set: per recording and their mean (dB), from the set and its no-music twin.

    Returns ``{"per_recording": {(subject, stimulus): dB}, "mean_db": float}``. The two folders must hold the same
    recordings (same seed and layout, one with ``snr_db=None``).
    """
    from datamodules.nmed import read_recordings

    none = {(r.subject, r.stimulus): r.eeg for r in read_recordings(none_root, "nmed-t")}
    out: dict = {}
    for rec in read_recordings(music_root, "nmed-t"):
        key = (rec.subject, rec.stimulus)
        if key not in none:
            raise ValueError(f"{none_root}: no recording of subject {key[0]}, song{key[1]} (the music set has it)")
        other = none[key].astype(np.float64)
        out[key] = snr_db(rec.eeg.astype(np.float64) - other, other)
    if not out:
        raise ValueError(f"{music_root}: no recordings read")
    return {"per_recording": out, "mean_db": float(np.mean(list(out.values())))}

"""The acoustic features the cortex tracks, computed from the written audio as a TRF study computes them.

* **Envelope**: the broadband amplitude envelope (frame RMS, compressed by a power of 0.6, as in the temporal
  response function (TRF) literature's compressed envelopes), at the acquisition rate.
* **Spectral flux**: the half-wave rectified frame-to-frame increase of the log magnitude spectrum summed over
  frequency — the feature that tracks note onsets and timbre changes and that cortical activity follows best for
  slow music in recent work.

Both are returned z-scored over the song, so the response's scale is set by the TRF kernels and the SNR knob only.
"""
from __future__ import annotations

import numpy as np


def _frames(audio: np.ndarray, hop: int, n_frames: int, win: int) -> np.ndarray:
    pad = np.pad(audio.astype(np.float64), (win // 2, win))
    idx = np.arange(n_frames)[:, None] * hop + np.arange(win)[None, :]
    return pad[idx]


def acoustic_features(audio: np.ndarray, sr: int, rate: float, n_frames: int) -> dict[str, np.ndarray]:
    """``{"envelope", "flux"}``: ``[n_frames]`` z-scored features at ``rate`` Hz (frame ``i`` centred on ``i / rate``)."""
    hop = int(round(sr / rate))
    if abs(hop * rate - sr) > 1e-6:
        raise ValueError(f"audio rate {sr} is not a multiple of the feature rate {rate}")
    win = 4 * hop
    frames = _frames(audio, hop, n_frames, win) * np.hanning(win)[None, :]
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    envelope = rms ** 0.6
    mag = np.abs(np.fft.rfft(frames, axis=1))
    logmag = np.log(mag + 1e-3 * (mag.max() + 1e-12))
    flux = np.maximum(np.diff(logmag, axis=0, prepend=logmag[:1]), 0.0).sum(axis=1)
    return {"envelope": _zscore(envelope), "flux": _zscore(flux)}


def slow_loudness(envelope: np.ndarray, rate: float, tau_s: float = 1.0) -> np.ndarray:
    """The envelope smoothed by a causal exponential of time constant ``tau_s`` (what alpha follows), z-scored."""
    a = np.exp(-1.0 / (tau_s * rate))
    from scipy.signal import lfilter

    return _zscore(lfilter([1 - a], [1, -a], envelope))


def _zscore(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    sd = x.std()
    return (x - x.mean()) / (sd if sd > 0 else 1.0)

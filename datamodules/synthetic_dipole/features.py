"""Audio features at the EEG rate (one frame per EEG sample, frame ``i`` centred on audio sample ``i * HOP``).

Four families drive the responses, each z-scored over the song:

* ``flux``     — spectral flux: half-wave rectified frame-to-frame rise of the log-magnitude spectrum
  (512-point Hann STFT, hop 128 = one EEG sample), summed over bins; an onset envelope.
* ``loudness`` — frame RMS in dB (1024-sample window), smoothed over 50 ms.
* ``pitch``    — the melody's MIDI pitch from the score (held through rests): pitch height.
* ``density``  — flux smoothed over 1 s (Hann): how busy the music is; it drives the induced (band-power) response.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import fftconvolve

from .config import HOP, SFREQ

FAMILIES = ("flux", "loudness", "pitch", "density")


def _frames(audio: np.ndarray, n_fft: int, n_frames: int) -> np.ndarray:
    """``[n_frames, n_fft]`` frames centred on ``i * HOP`` (zero-padded at both ends)."""
    pad = np.concatenate([np.zeros(n_fft // 2), audio, np.zeros(n_fft // 2 + n_frames * HOP)])
    return sliding_window_view(pad, n_fft)[::HOP][:n_frames]


def _smooth(x: np.ndarray, seconds: float) -> np.ndarray:
    n = max(3, int(round(seconds * SFREQ)) | 1)
    w = np.hanning(n)
    return fftconvolve(x, w / w.sum(), mode="same")


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-9)


def song_features(audio: np.ndarray, melody_midi: np.ndarray, n_frames: int) -> dict[str, np.ndarray]:
    """The four z-scored feature families ``{name: [n_frames]}`` of one song's audio (float, AUDIO_SR)."""
    audio = np.asarray(audio, dtype=np.float64)
    spec_frames = _frames(audio, 512, n_frames + 1) * np.hanning(512)[None, :]
    logmag = np.log(np.abs(np.fft.rfft(spec_frames, axis=1)) + 1e-3)
    flux = np.maximum(np.diff(logmag, axis=0), 0.0).sum(1)[:n_frames]
    rms = np.sqrt((_frames(audio, 1024, n_frames) ** 2).mean(1) + 1e-10)
    loud = _smooth(20.0 * np.log10(rms), 0.05)
    pitch = np.asarray(melody_midi[:n_frames], dtype=np.float64)
    if len(pitch) < n_frames:
        pitch = np.concatenate([pitch, np.full(n_frames - len(pitch), pitch[-1])])
    density = _smooth(flux, 1.0)
    return {"flux": _z(flux), "loudness": _z(loud), "pitch": _z(pitch), "density": _z(density)}

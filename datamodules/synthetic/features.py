"""Music features at the EEG rate (:func:`audio_features`): envelope, onset strength, four band energies and
the spectral centroid, each z-scored over the stimulus."""
from __future__ import annotations

import math

import numpy as np

FEATURE_NAMES: tuple[str, ...] = (
    "envelope", "onset", "band_0_250", "band_250_1k", "band_1k_4k", "band_4k_up", "centroid",
)


def audio_features(audio: np.ndarray, sr: int, sfreq: float, n_samples: int) -> np.ndarray:
    """Music features ``[len(FEATURE_NAMES), n_samples]`` at the EEG rate (frame k centred on k/sfreq).

    Each row is z-scored over the stimulus. Audio shorter than ``n_samples / sfreq`` is zero-padded
    (callers make the audio cover the EEG).
    """
    audio = np.asarray(audio, dtype=np.float32)
    n_fft = 1 << int(round(math.log2(0.032 * sr)))
    half = n_fft // 2
    centres = np.round(np.arange(n_samples) * (sr / sfreq)).astype(np.int64)
    need = int(centres[-1]) + n_fft + 1
    padded = np.zeros(max(need, audio.size + 2 * half), dtype=np.float32)
    padded[half:half + audio.size] = audio
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[centres]
    spec = np.abs(np.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=1)) ** 2
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    eps = 1e-10
    feats = np.empty((len(FEATURE_NAMES), n_samples))
    total = spec.sum(axis=1)
    feats[0] = np.log(total + eps)
    logmag = np.log1p(100.0 * np.sqrt(spec))
    flux = np.maximum(np.diff(logmag, axis=0), 0.0).sum(axis=1)
    feats[1] = np.concatenate([[0.0], flux])
    edges = [0.0, 250.0, 1000.0, 4000.0, sr / 2 + 1]
    for b in range(4):
        sel = (freqs >= edges[b]) & (freqs < edges[b + 1])
        feats[2 + b] = np.log(spec[:, sel].sum(axis=1) + eps)
    feats[6] = (spec * freqs).sum(axis=1) / (total + eps)
    feats -= feats.mean(axis=1, keepdims=True)
    sd = feats.std(axis=1, keepdims=True)
    return feats / np.where(sd > 0, sd, 1.0)

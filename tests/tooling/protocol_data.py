"""Small NMED-T-format data sets built to test the protocol's control (not the demo's physiology-flavoured design):

- ``kind="shared"``: every subject's EEG is the SAME linear response to the music (one random mixing of the
  music features, per channel a lag) plus independent white noise — no recording fingerprint at all.
- ``kind="fingerprint"``: no music at all; each recording's channels are AR(1) noise with the recording's own
  coefficients (a spectral fingerprint per channel that per-channel z-scoring keeps).

Files are written in the release layout (``songNN_Imputed.mat`` + ``stimuli/songNN.wav``) so the data go through
the real readers, ``prepare`` and the data module.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from datamodules.nmed import NMED_N_CHANNELS
from datamodules.songs import SONGS
from datamodules.synthetic import audio_features, synth_song


def write_protocol_data(root: str | Path, kind: str, n_subjects: int = 6, songs=(0, 1, 2), duration_s: float = 48.0,
                        seed: int = 0, sfreq: float = 125.0, audio_sr: int = 16000) -> Path:
    import scipy.io
    import soundfile as sf

    assert kind in ("shared", "fingerprint")
    root = Path(root)
    (root / "stimuli").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    T = int(duration_s * sfreq)
    mix = rng.standard_normal((NMED_N_CHANNELS, 7))  # shared by every subject
    lag = rng.integers(5, 25, NMED_N_CHANNELS)
    for song in songs:
        number = SONGS[song].number
        audio = synth_song(song, duration_s + 2.0, audio_sr)
        sf.write(str(root / "stimuli" / f"song{number}.wav"), audio, audio_sr, subtype="PCM_16")
        data = np.empty((NMED_N_CHANNELS, T, n_subjects), dtype=np.float32)
        if kind == "shared":
            feats = audio_features(audio, audio_sr, sfreq, T + 32)  # [7, T + 32]
            response = np.stack([mix[c] @ feats[:, 32 - lag[c]:32 - lag[c] + T] for c in range(NMED_N_CHANNELS)])
            response /= response.std(1, keepdims=True)
        for j in range(n_subjects):
            noise = rng.standard_normal((NMED_N_CHANNELS, T))
            if kind == "shared":
                x = response + noise
            else:
                from scipy.signal import lfilter

                phi = rng.uniform(-0.8, 0.8, NMED_N_CHANNELS)
                x = np.stack([lfilter([1.0], [1.0, -phi[c]], noise[c]) for c in range(NMED_N_CHANNELS)])
            data[:, :, j] = 10.0 * x  # µV-sized
        subs = np.arange(1, n_subjects + 1, dtype=np.float64)[None, :]
        scipy.io.savemat(str(root / f"song{number}_Imputed.mat"),
                         {f"data{number}": data, f"subs{number}": subs, "fs": np.array([[sfreq]])}, format="5")
    return root

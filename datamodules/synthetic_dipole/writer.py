"""Writing the data set: ``songNN_Imputed.mat`` per song (NMED-T layout), ``stimuli/songNN.wav``, and
``synthetic_dipole.json`` (the settings and the ground truth: every subject's dipoles, families, lags, signs,
and per recording the scale, the responding channels and the SNR measured on what was written)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import scipy.io.wavfile

from chanmusic.core.electrodes import NMED_CH_NAMES

from .config import AUDIO_SR, NOISE, DipoleConfig, rng
from .features import song_features
from .music import synth_song
from .noise import background_topographies, recording_noise, release_highpass
from .response import make_subject, music_signal
from .snr import measure_snr_db, responding, scale_for

TRUTH_FILE = "synthetic_dipole.json"
AUDIO_EXTRA_S = 1.0  #: the audio runs this much longer than the EEG


def write_dipole_set(root: str | Path, seed: int = 0, snr_db: float = -9.0, n_subjects: int = 6, n_songs: int = 10,
              duration_s: float = 180.0, music: bool = True, **options: Any) -> Path:
    """Write the dipole synthetic set in the NMED-T layout under ``root`` and return ``root``.

    Args:
        root: output folder (created); it receives ``song21_Imputed.mat`` … (``data<NN>`` float32
            ``[125, T, n_subjects]`` in µV, ``subs<NN>`` ``[1, n_subjects]``, ``fs`` = 125),
            ``stimuli/song<NN>.wav`` (16 kHz mono, 16-bit, ``duration_s`` + 1 s) and ``synthetic_dipole.json``.
        seed: every random draw derives from it (see :mod:`.config`).
        snr_db: music-driven / noise power on responding channels (:mod:`.snr`), exact per recording.
        n_subjects, n_songs, duration_s: size (songs are NMED-T's 21, 22, …).
        music: False writes the same noise without any music-driven signal (a control set).
        options: further :class:`DipoleConfig` fields (``highpass_hz``, ``n_sources``, ``noise_rms_uv``, …).
    """
    cfg = DipoleConfig(seed=int(seed), snr_db=float(snr_db), n_subjects=int(n_subjects), n_songs=int(n_songs),
                    duration_s=float(duration_s), music=bool(music), **options)
    root = Path(root).expanduser()
    _clear_previous(root)
    (root / "stimuli").mkdir(parents=True, exist_ok=True)
    T = cfg.n_samples
    subjects = {sid: make_subject(cfg.seed, sid, cfg.n_sources) for sid in cfg.subjects}
    bg_topos = {sid: background_topographies(cfg.seed, sid) for sid in cfg.subjects}
    recordings: list[dict[str, Any]] = []
    for stim in cfg.stimuli:
        audio, melody = synth_song(cfg.seed, stim, cfg.duration_s + AUDIO_EXTRA_S)
        scipy.io.wavfile.write(str(root / "stimuli" / f"song{stim}.wav"), AUDIO_SR,
                               np.round(audio * 32767).astype(np.int16))
        feats = song_features(audio, melody, T)
        data = np.empty((len(NMED_CH_NAMES), T, cfg.n_subjects), dtype=np.float32)
        for j, sid in enumerate(cfg.subjects):
            subj = subjects[sid]
            noise, carrier, facts = recording_noise(cfg, subj, stim, bg_topos[sid])
            g = rng(cfg.seed, NOISE, sid, stim, 1)  # the recording's signature: gains and offsets
            gain = g.uniform(0.85, 1.15, size=(len(NMED_CH_NAMES), 1))
            offset = g.uniform(-25.0, 25.0, size=(len(NMED_CH_NAMES), 1))
            noise *= gain
            signal = release_highpass(gain * music_signal(subj, feats, carrier), cfg.highpass_hz)
            a = scale_for(signal, noise, cfg.snr_db, cfg.responding_fraction)
            signal *= a
            data[:, :, j] = noise + (signal if cfg.music else 0.0) + offset
            r = responding(signal, cfg.responding_fraction)
            recordings.append({
                "stimulus": stim, "subject": sid, "signal_scale": a, "music": cfg.music,
                "responding_channels": [NMED_CH_NAMES[c] for c in np.flatnonzero(r)],
                "snr_db_measured": measure_snr_db(signal, noise, cfg.responding_fraction)
                if cfg.music else None,
                "signal_rms_uv_responding": float(np.sqrt(signal[r].var(axis=1).mean())),
                "noise_rms_uv_responding": float(np.sqrt(noise[r].var(axis=1).mean())), **facts})
        scipy.io.savemat(str(root / f"song{stim}_Imputed.mat"), {
            f"data{stim}": data, f"subs{stim}": np.array([cfg.subjects], dtype=np.float64),
            "fs": np.array([[125.0]])})
    truth = {"generator": "datamodules.synthetic_dipole", "settings": cfg.as_dict(),
             "subjects": [subjects[s].meta for s in cfg.subjects], "recordings": recordings}
    (root / TRUTH_FILE).write_text(json.dumps(truth, indent=1))
    return root


def _clear_previous(root: Path) -> None:
    """Remove this generator's earlier output in ``root`` (the readers would read stale song files); refuse a
    folder holding NMED files that it did not write."""
    if root.exists() and not root.is_dir():
        raise ValueError(f"synthetic_dipole: root: {root} is a file — give a folder (it is created if missing)")
    if not root.is_dir():
        return
    old = sorted(root.glob("song*_Imputed.mat"))
    if old and not (root / TRUTH_FILE).is_file():
        raise ValueError(f"synthetic_dipole: root: {root} already holds NMED files ({old[0].name}, …) not written by "
                         "this generator — choose an empty or new folder")
    for p in old + sorted((root / "stimuli").glob("song*.wav")) + [root / TRUTH_FILE]:
        p.unlink(missing_ok=True)

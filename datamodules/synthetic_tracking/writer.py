"""Writing a tracking set: NMED-T's files (``songNN_Imputed.mat`` with ``dataNN`` 125 × T × participants, ``subsNN``,
``fs``), the song audio (``stimuli/songNN.wav``) and a ``ground_truth.json`` of what was drawn."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .anatomy import nmed_positions, subject_head
from .features import acoustic_features
from .layout import NMEDT_STIMULI, TrackingLayout, rng_for
from .music import plan_song, synthesize_song
from .nuisance import background, electrode_faults, ongoing_alpha
from .release import bad_contact_noise, release, release_filters, release_space
from .response import music_response, subject_tuning
from .snr import responding_channels, scale_for_snr, snr_db


def write_synthetic_tracking(root: str | Path, seed: int = 0, snr_db: float | None = -9.0,
                             subjects: Sequence[int] = (2, 3, 4, 5), stimuli: Sequence[int] = NMEDT_STIMULI,
                             duration_s: float = 90.0, overwrite: bool = False) -> Path:
    """Write a synthetic NMED-T-format set whose EEG tracks its songs as the literature describes.

    Args:
        root: folder to write (``songNN_Imputed.mat``, ``stimuli/songNN.wav``, ``ground_truth.json``).
        seed: every draw follows from it; the same seed with ``snr_db=None`` writes the same background, no music.
        snr_db: music response vs everything else per responding channel (dB, :mod:`.snr`); ``None``: no response.
        subjects: participant ids (``subsNN``).
        stimuli: NMED-T song numbers to write (21-30).
        duration_s: seconds of EEG and audio per song.
        overwrite: delete an earlier set's EEG and audio files in ``root`` first (otherwise an existing set is
            an error).
    """
    layout = TrackingLayout(subjects=tuple(int(s) for s in subjects), stimuli=tuple(int(s) for s in stimuli),
                            duration_s=float(duration_s), snr_db=None if snr_db is None else float(snr_db),
                            seed=int(seed))
    root = Path(root)
    existing = sorted(root.glob("song*_Imputed.mat")) if root.is_dir() else []
    if existing and not overwrite:
        raise FileExistsError(f"{root}: already holds a set ({existing[0].name} …) — choose an empty folder or "
                              "pass overwrite=True (--overwrite)")
    for old in existing + (sorted((root / "stimuli").glob("song*.wav")) if existing else []):
        old.unlink()  # overwrite: no file of the earlier set may stay and mix with this one
    (root / "stimuli").mkdir(parents=True, exist_ok=True)
    pos = nmed_positions()
    heads = {s: subject_head(layout.seed, s, pos) for s in layout.subjects}
    tunings = {s: subject_tuning(layout.seed, s) for s in layout.subjects}
    faults = {s: electrode_faults(layout.seed, s, pos) for s in layout.subjects}
    truth: dict = {"layout": {"subjects": list(layout.subjects), "stimuli": list(layout.stimuli),
                              "duration_s": layout.duration_s, "raw_sfreq": layout.raw_sfreq, "sfreq": layout.sfreq,
                              "snr_db": layout.snr_db, "seed": layout.seed},
                   "subjects": {str(s): {"lag_s": tunings[s].lag_s, "weights": tunings[s].weights,
                                         "bad_rows": list(faults[s].bad), "bridged_rows": list(faults[s].bridged)}
                                for s in layout.subjects},
                   "recordings": []}
    for stim in layout.stimuli:
        plan = plan_song(stim, layout.duration_s, layout.seed)
        audio = synthesize_song(plan, layout.duration_s, layout.audio_sr, layout.seed)
        _write_wav(root / "stimuli" / f"song{stim}.wav", audio, layout.audio_sr)
        feats = acoustic_features(audio, layout.audio_sr, layout.raw_sfreq, layout.n_raw)
        data = np.empty((len(pos), layout.n_samples, len(layout.subjects)), dtype=np.float32)
        for j, subj in enumerate(layout.subjects):
            data[:, :, j], info = _recording(layout, plan, feats, heads[subj], tunings[subj], faults[subj], pos,
                                             subj, stim)
            truth["recordings"].append({"subject": subj, "stimulus": stim, **info})
        _write_mat(root / f"song{stim}_Imputed.mat", stim, data, layout)
    (root / "ground_truth.json").write_text(json.dumps(truth, indent=1))
    return root


def _recording(layout: TrackingLayout, plan, feats, head, tuning, faults, pos, subject: int, stimulus: int
               ) -> tuple[np.ndarray, dict]:
    """One participant's released EEG ``[C, T]`` (µV) for one song, and what was drawn for it."""
    rate, n = layout.raw_sfreq, layout.n_raw
    other_raw = background(layout.seed, subject, stimulus, head, pos, n, rate)
    junk = bad_contact_noise(rng_for(layout.seed, "junk", subject, stimulus), len(faults.bad), n)
    other = release(other_raw, faults, pos, rate, layout.decimation, junk)
    gain = float(np.exp(rng_for(layout.seed, "gain", subject, stimulus).normal(0.0, 0.15)))
    info: dict = {"gain": gain}
    if layout.snr_db is None:
        return gain * other, info
    carrier = ongoing_alpha(layout.seed, subject, stimulus, n, rate)
    maps, courses = music_response(feats, plan, head, tuning, carrier, rate)
    music = release_space(maps, faults, pos) @ release_filters(courses, rate, layout.decimation)
    music *= scale_for_snr(music, other, layout.snr_db)
    channels = responding_channels(music)
    info.update(snr_db=snr_db(music, other, channels), n_responding=int(len(channels)))
    return gain * (other + music), info


def _write_mat(path: Path, stimulus: int, data: np.ndarray, layout: TrackingLayout) -> None:
    from scipy.io import savemat

    savemat(str(path), {f"data{stimulus}": data,
                        f"subs{stimulus}": np.asarray(layout.subjects, dtype=np.float64)[None, :],
                        "fs": np.array([[layout.sfreq]])}, do_compression=False)


def _write_wav(path: Path, audio: np.ndarray, sr: int) -> None:
    from scipy.io import wavfile

    wavfile.write(str(path), sr, np.round(np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16))

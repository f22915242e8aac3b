"""Checks of the input signals at ``prepare``: song audio (silence, clipping, channels that cancel when mixed to
mono) and EEG recordings (constant).

Where results would be meaningless the check raises :class:`~chanmusic.core.errors.DataError` (silent audio, or
stereo whose mono mix cancels: every window of the song would get one CLAP embedding); otherwise it counts a
warning that ``prepare`` stores in the manifest's ``warnings`` and prints.

=========================  ===================================================================  ===========
check                      rule (on the file's samples, all channels)                           outcome
=========================  ===================================================================  ===========
silent file                RMS of every channel < :data:`SILENCE_RMS` (-80 dBFS)                error
channel cancellation       mono-mix RMS < :data:`CANCEL_ERROR` x mean channel RMS (-26 dB)      error
partial cancellation       ... < :data:`CANCEL_WARN` x mean channel RMS (-10 dB)                warning
clipping                   samples in runs of >= 3 at |x| >= :data:`FULL_SCALE`, > 0.1 %        warning
silent windows             a music window's RMS < :data:`SILENCE_RMS`                           warning
one embedding per song     every window of a song has the same CLAP embedding                   error
constant EEG recording     every channel's peak-to-peak <= 1e-9 (the file's units)              error
truncated WAV              the header declares more audio bytes than the file holds             error
audio far longer than EEG  longer by > :data:`LONGER_S` s and > :data:`LONGER_FRACTION` of EEG   error
=========================  ===================================================================  ===========
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from chanmusic.core.errors import DataError

SILENCE_RMS = 1e-4
CANCEL_ERROR = 0.05
CANCEL_WARN = 0.3
FULL_SCALE = 0.999
CLIP_FRACTION = 1e-3
#: audio longer than its EEG by more than both of these is another song
LONGER_S = 10.0
LONGER_FRACTION = 0.05


def read_channels(path: Path) -> tuple[np.ndarray, int]:
    """``(audio [S, channels] float32, sr)`` without mixing to mono (soundfile; mp3 through libsndfile >= 1.1)."""
    import soundfile as sf

    from datamodules.recording import DataFormatError
    from datamodules.stimulus_audio import unreadable

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise DataFormatError(unreadable(Path(path), e)) from e
    return data, int(sr)


def _rms(x: np.ndarray, axis=None) -> np.ndarray:
    return np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=axis))


def clipped_samples(x: np.ndarray, run: int = 3) -> int:
    """Samples of ``x`` (1-D) in runs of at least ``run`` consecutive values at full scale."""
    at = np.abs(x) >= FULL_SCALE
    if not at.any():
        return 0
    edges = np.diff(np.concatenate([[0], at.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lengths = ends - starts
    return int(lengths[lengths >= run].sum())


def wav_shortfall(path: Path) -> tuple[int, int] | None:
    """``(declared, present)`` bytes of a WAV's ``data`` chunk when the file holds fewer than its header declares (a
    cut or damaged copy: decoders then return only what is there, silently); ``None`` otherwise or for non-WAV."""
    import struct

    if Path(path).suffix.lower() != ".wav":
        return None
    size = Path(path).stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            cid, n = struct.unpack("<4sI", fh.read(8))
            if cid == b"data":
                present = size - pos - 8
                return (n, present) if n != 0xFFFFFFFF and n > present else None
            pos += 8 + n + (n & 1)
    return None


def check_audio_not_longer(path: Path, audio_s: float, eeg_s: float, source: str) -> None:
    """Refuse song audio far longer than the EEG recorded while it played (more than :data:`LONGER_S` seconds and
    :data:`LONGER_FRACTION` of the EEG): the recording covers the song, so this is another song (a swapped or
    misnumbered file, another release's folder)."""
    if audio_s > eeg_s + max(LONGER_S, LONGER_FRACTION * eeg_s):
        raise DataError(str(path), f"the audio lasts {audio_s:.2f} s but the EEG recorded while it played "
                        f"({source}) lasts {eeg_s:.2f} s: it looks like another song",
                        "check that the file is this dataset's songNN (NMED-T and NMED-H both number songs from "
                        "21) and that --data.audio_root points at this dataset's own audio folder")


def check_song_audio(path: Path, warnings: dict[str, int]) -> None:
    """Check one song file; raise ``DataError`` or add to ``warnings`` (``audio_*`` counters)."""
    cut = wav_shortfall(path)
    if cut is not None:
        raise DataError(str(path), f"the WAV is truncated or corrupt: its header declares {cut[0]} bytes of audio, "
                        f"the file holds {cut[1]}", "replace it with a complete copy of the song")
    data, _ = read_channels(path)
    mono = data.mean(axis=1)
    ch_rms = _rms(data, axis=0)
    mix_rms = float(_rms(mono))
    if float(ch_rms.max(initial=0.0)) < SILENCE_RMS:
        raise DataError(str(path), f"the audio is silent (RMS {mix_rms:.1e}, below -80 dBFS): every window would "
                        "get the same CLAP embedding", "use the real song file")
    if data.shape[1] > 1:
        ratio = mix_rms / max(float(ch_rms.mean()), 1e-12)
        if ratio < CANCEL_ERROR:
            raise DataError(str(path), f"its {data.shape[1]} channels cancel when mixed to mono (mix at "
                            f"{20 * np.log10(max(ratio, 1e-12)):.0f} dB of the channels: anti-phase stereo), so CLAP "
                            "would hear near silence", "fix the file's phase (e.g. invert one channel) or pass a "
                            "mono file")
        if ratio < CANCEL_WARN:
            warnings["audio_phase_cancel_songs"] = warnings.get("audio_phase_cancel_songs", 0) + 1
    clipped = sum(clipped_samples(data[:, c]) for c in range(data.shape[1]))
    if clipped > CLIP_FRACTION * data.size:
        warnings["audio_clipped_songs"] = warnings.get("audio_clipped_songs", 0) + 1
        warnings["audio_clipped_samples"] = warnings.get("audio_clipped_samples", 0) + int(clipped)


def count_silent_windows(clips: np.ndarray) -> int:
    """Music windows (rows of ``clips [B, S]``) whose RMS is below :data:`SILENCE_RMS`."""
    return int((_rms(clips, axis=1) < SILENCE_RMS).sum())


def check_embeddings(clap: np.ndarray, music: np.ndarray, stimuli: list[str], audio_root: Path) -> None:
    """Raise ``DataError`` when every window of a song (with more than one window) got the same CLAP embedding.

    Args:
        clap: ``[M, D]`` embeddings; music: ``[M, 3]`` (stimulus_key, start, length); stimuli: the keys' names.
    """
    for sk, key in enumerate(stimuli):
        rows = np.flatnonzero(music[:, 0] == sk)
        if len(rows) < 2:
            continue
        emb = np.asarray(clap[rows], dtype=np.float64)
        if float(np.abs(emb - emb[0]).max()) < 1e-6:
            raise DataError(f"{audio_root} ({key})", f"all {len(rows)} windows of this song got the same CLAP "
                            "embedding: the audio carries nothing to align to (silent, or cancelled in the mono "
                            "mix)", "check the song file")


def check_recording(eeg: np.ndarray, source: str, subject: int) -> None:
    """Raise ``DataError`` when every channel of a recording (``eeg [C, T]``) is constant: scaling would leave
    all zeros, and every window would be the same input."""
    if eeg.size and float(np.ptp(eeg, axis=1).max()) <= 1e-9:
        raise DataError(f"{source} (subject {subject})", "the EEG is constant on every channel (a flat recording)",
                        "drop this subject with --data.subjects, or fix the file")

"""Stimulus audio files: finding ``songNN.wav`` (or .flac/.ogg/.mp3) in an audio folder, its length, reading it as
mono float32 (optionally resampled) and checking that it covers the EEG it must explain.

``songNN`` is the NMED releases' naming and the default of every dataset
(:meth:`datamodules.protocol.MusicEEGDataset.audio_path`); a dataset with other names overrides that method."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from chanmusic.core.resample import resample
from datamodules.recording import DataFormatError, Recording

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3")  # preference order


def audio_path(audio_root: str | Path, stimulus: int) -> Path:
    """The audio file of stimulus ``songNN`` in ``audio_root`` (``.wav`` > ``.flac`` > ``.ogg`` > ``.mp3``)."""
    audio_root = Path(audio_root).expanduser()
    stimulus = int(stimulus)
    expected = " | ".join(f"song{stimulus}{ext}" for ext in AUDIO_EXTENSIONS)
    if not audio_root.is_dir():
        raise DataFormatError(
            f"audio folder {audio_root} does not exist: put the song audio there as {expected} "
            "(NMED-T's audio is not in the release — bring your own copies), or set --data.audio_root"
        )
    entries = {p.name.lower(): p for p in audio_root.iterdir()}
    for ext in AUDIO_EXTENSIONS:
        p = entries.get(f"song{stimulus}{ext}")
        if p is not None and p.is_file():
            return p
        if p is not None and p.exists():
            raise DataFormatError(f"{p}: not a regular file (a FIFO, device or folder) — put the song's audio file "
                                  f"there")
    raise DataFormatError(
        f"no audio for stimulus {stimulus} in {audio_root}: expected {expected} "
        "(NN = the release's song number; NMED-T's audio is not in the release — bring your own copies)"
    )


def audio_duration(path: str | Path) -> float:
    """Length of an audio file in seconds, from its header (soundfile; mp3 through libsndfile >= 1.1)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"audio file {path} does not exist")
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as e:
        raise DataFormatError(unreadable(path, e)) from e
    if info.frames <= 0 or info.samplerate <= 0:
        raise DataFormatError(f"{path}: the audio file holds no samples — use the full-length track")
    return info.frames / float(info.samplerate)


def unreadable(path: Path, e: Exception) -> str:
    """The one message for an audio file soundfile cannot read (naming libsndfile's version where mp3 needs 1.1)."""
    import soundfile as sf

    hint = "convert it to WAV or FLAC"
    if path.suffix.lower() == ".mp3" and "MP3" not in sf.available_formats():
        hint = (f"this soundfile's libsndfile {sf.__libsndfile_version__} reads no mp3 (it needs libsndfile >= 1.1: "
                "`pip install -U soundfile` brings one), or convert it to WAV or FLAC")
    return f"{path}: cannot read this audio file ({type(e).__name__}: {e}) — {hint}"


def song_audio_files(audio_root: str | Path) -> list[Path]:
    """Every ``song*`` audio file in ``audio_root`` (what the cache key fingerprints); ``[]`` without the folder."""
    audio_root = Path(audio_root)
    if not audio_root.is_dir():
        return []
    return sorted(p for p in audio_root.glob("song*") if p.suffix.lower() in AUDIO_EXTENSIONS)


def read_audio(audio_root: str | Path, stimulus: int, target_sr: int | None = None
               ) -> tuple[np.ndarray, int]:
    """Mono float32 audio of stimulus ``songNN`` from sample 0 (= EEG sample 0), and its rate
    (:func:`read_audio_file` of :func:`audio_path`)."""
    return read_audio_file(audio_path(audio_root, stimulus), target_sr)


def read_audio_file(path: Path, target_sr: int | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 audio of one file from sample 0, and its rate.

    Multi-channel files are averaged to mono; ``target_sr`` resamples (:func:`chanmusic.core.resample.resample`).
    """
    import soundfile as sf

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise DataFormatError(unreadable(Path(path), e)) from e
    audio = data.mean(axis=1)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.size == 0:
        raise DataFormatError(f"{path}: the audio file holds no samples")
    if not np.isfinite(audio).all():
        raise DataFormatError(f"{path}: the audio holds {int((~np.isfinite(audio)).sum())} NaN/Inf samples")
    sr = int(sr)
    if target_sr is not None and int(target_sr) != sr:
        audio = resample(audio, sr, int(target_sr))
        sr = int(target_sr)
    return audio, sr


def check_audio_covers(recording: Recording, audio_len_s: float | None = None, *,
                       audio_root: str | Path | None = None, tolerance_s: float = 0.0) -> float:
    """Raise unless the stimulus audio lasts at least as long as ``recording``'s EEG; return its length.

    Give the audio length directly (``audio_len_s``) or let it be read from ``audio_root``
    (``audio_path`` + :func:`audio_duration`). Audio sample 0 is aligned to EEG sample 0, so audio
    shorter than the EEG would leave EEG without a stimulus; ``tolerance_s`` accepts a known shortfall.
    """
    path: Path | None = None
    if audio_len_s is None:
        if audio_root is None:
            raise TypeError("check_audio_covers needs audio_len_s or audio_root")
        path = audio_path(audio_root, recording.stimulus)
        audio_len_s = audio_duration(path)
    eeg_s = recording.duration_s
    if audio_len_s + float(tolerance_s) < eeg_s:
        where = f"audio {path}" if path is not None else f"the audio of stimulus {recording.stimulus}"
        raise DataFormatError(
            f"{where} lasts {audio_len_s:.3f} s but the EEG it must explain ({recording.source}, "
            f"participant {recording.subject}) lasts {eeg_s:.3f} s; audio sample 0 is aligned to EEG "
            "sample 0, so use the full-length track (not a preview or trimmed copy)"
        )
    return float(audio_len_s)


"""The dataset protocol: what chanmusic needs to know of a music-EEG dataset, so that selection, caching, splitting,
windowing and the no-music control never name one.

A dataset is a :class:`MusicEEGDataset` registered in the dataset table (:mod:`datamodules.registry`). NMED-T and
NMED-H (:mod:`datamodules.nmed.datasets`) are the two built in; ``docs/datasets.md`` adds one in one file. It says

* who it is: ``name`` (the value of ``--data.dataset``), other spellings (``aliases``) and ``code``, a small integer
  of its own that seeds its per-recording draws and namespaces its subjects (global id = 1000 × (code − 1) + id);
* what was played: its ``songs`` (:class:`SongInfo`), which song a stimulus is (:meth:`~MusicEEGDataset.song_number`)
  and where a stimulus's audio is (:meth:`~MusicEEGDataset.audio_path`; default ``songNN.wav`` in the audio folder);
* what was recorded: the channels (``ch_names``, in row order) and rate (``sfreq``) of every recording, the versions
  of a stimulus (``conditions``) and the hearings it has; its files under a root (:meth:`~MusicEEGDataset.eeg_files`,
  which the cache key fingerprints) and its recordings (:meth:`~MusicEEGDataset.recordings`: subject, stimulus,
  condition, hearing and the EEG, one recording at a time, so only one file needs to be in memory).
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Iterator, Sequence

import numpy as np

from datamodules.recording import DataFormatError, Recording
from datamodules.songs import song_of
from datamodules.stimulus_audio import audio_path, song_audio_files

if TYPE_CHECKING:
    import mne

__all__ = ["DataFormatError", "MusicEEGDataset", "Recording", "RecordingRequest", "SongInfo", "spelling_key"]


@dataclass(frozen=True)
class SongInfo:
    """One song of a dataset, by the number its intact stimulus has in the dataset (NMED: ``songNN``)."""

    number: int
    title: str
    artist: str
    genre: str  # one label; the genre metrics compare these
    bpm: float | None = None


@dataclass(frozen=True)
class RecordingRequest:
    """Which recordings a run reads. A dataset may use it to skip reading; ``prepare`` keeps only what it asks for
    (conditions and hearings only for a dataset that has more than one of them)."""

    songs: Sequence[int] | None = None        # global song ids (rows of datamodules.songs.SONGS); None = all
    subjects: Sequence[int] | None = None     # the dataset's own participant ids; None = all
    conditions: Sequence[str] | None = None   # None = every condition present
    hearings: Sequence[str] | None = None     # None = every hearing present
    expected_sfreq: float | None = None       # the rate every recording must hold (None: any)


class MusicEEGDataset(ABC):
    """A music-EEG dataset: participants' EEG while they heard songs, and the songs' audio (see the module docstring).

    Subclasses set the class attributes and implement :meth:`recordings`; the other methods have defaults.
    """

    name: ClassVar[str]                      # --data.dataset value, lower case, e.g. "nmed-t"
    code: ClassVar[int]                      # unique, >= 1 (NMED-T 1, NMED-H 2)
    songs: ClassVar[tuple[SongInfo, ...]]    # its songs; their global ids follow the table's code order
    ch_names: ClassVar[tuple[str, ...]]      # the rows of every recording's EEG
    sfreq: ClassVar[float]                   # the rate of every recording (Hz)
    file_pattern: ClassVar[str]              # glob of its EEG files in a root, e.g. "song*_Imputed.mat"
    aliases: ClassVar[tuple[str, ...]] = ()  # other spellings --data.dataset accepts
    conditions: ClassVar[tuple[str, ...]] = ("orig",)  # versions of a stimulus (NMED-H: orig, rev, phase, meas)
    hearings: ClassVar[tuple[str, ...]] = ("a",)       # "a" (first hearing), "b" (second)

    @abstractmethod
    def recordings(self, root: Path, request: RecordingRequest) -> Iterator[Recording]:
        """Each recording under ``root`` (at least those ``request`` asks for), with its EEG, one at a time.
        Build them with :meth:`recording`. Raise :class:`DataFormatError` (``<file>: <what> — <fix>``) for a file
        that is not in the dataset's format."""

    def eeg_files(self, root: Path) -> list[Path]:
        """The files under ``root`` that hold its EEG (the cache key fingerprints them): ``file_pattern`` matches."""
        return sorted(root.glob(self.file_pattern))

    def audio_path(self, audio_root: Path, stimulus: int) -> Path:
        """The audio file of ``stimulus``: ``songNN.wav`` (or .flac/.ogg/.mp3) in ``audio_root``."""
        return audio_path(audio_root, stimulus)

    def audio_files(self, audio_root: Path) -> list[Path]:
        """Every stimulus audio file in ``audio_root`` (the cache key fingerprints them)."""
        return song_audio_files(audio_root)

    def song_number(self, stimulus: int) -> int:
        """The number of the song that ``stimulus`` is a version of (here: itself); ``ValueError`` for none."""
        known = sorted(s.number for s in self.songs)
        if int(stimulus) not in known:
            raise ValueError(f"unknown song number {stimulus} for {self.name}: the release numbers are {known}")
        return int(stimulus)

    def montage(self) -> mne.channels.DigMontage | None:
        """Electrode positions of ``ch_names`` from MNE's ``standard_1005`` montage; ``None`` when it lacks one."""
        import mne

        pos = mne.channels.make_standard_montage("standard_1005").get_positions()
        by_name = {n.upper(): xyz for n, xyz in pos["ch_pos"].items()}
        if any(ch.upper() not in by_name for ch in self.ch_names):
            return None
        return mne.channels.make_dig_montage(
            ch_pos={ch: by_name[ch.upper()] for ch in self.ch_names}, nasion=pos["nasion"], lpa=pos["lpa"],
            rpa=pos["rpa"], coord_frame=pos["coord_frame"])

    def missing_files(self, root: Path, request: RecordingRequest) -> list[str]:
        """Files the request needs that are not under ``root`` (``prepare`` counts and logs them); default none."""
        return []

    def recording(self, subject: int, stimulus: int, eeg: np.ndarray, *, condition: str = "orig",
                  hearing: str = "a", source: str = "", sfreq: float | None = None) -> Recording:
        """A :class:`Recording` of this dataset: its song looked up from ``stimulus``, its channels and rate."""
        return Recording(dataset=self.name, subject=int(subject), song=song_of(self.name, stimulus).index,
                         eeg=np.ascontiguousarray(eeg, dtype=np.float32), sfreq=float(sfreq or self.sfreq),
                         ch_names=list(self.ch_names), stimulus=int(stimulus), condition=condition,
                         hearing=hearing, source=source)


def spelling_key(name: object) -> str:
    """What two spellings of a dataset name share: lower case, letters and digits only (``NMED-T`` -> ``nmedt``)."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())

"""BIDS-EEG datasets (``--data.dataset bids --data.root DIR [--data.task T]``): any BIDS tree whose ``events.tsv``
names what was played in a ``stim_file`` column, read with ``mne-bids``.

What qualifies (README, "BIDS datasets"): EEG recordings under ``sub-*/[ses-*/]eeg/`` that ``mne_bids`` reads,
every one with the same EEG channels at the same rate; each ``*_events.tsv`` with ``onset``, ``duration`` and
``stim_file`` columns (rows with ``n/a`` in ``stim_file`` are other events, not used); every ``stim_file`` an audio
file in the dataset's ``stimuli/`` folder (relative to it, as BIDS says). One row with a stimulus is one hearing:
the EEG from its onset for its duration (or, with ``n/a`` duration, the audio's length), stimulus sample 0 = EEG
sample 0. Subjects are numbered 1..N in the order of their labels (``participants`` ``sub-01`` → 1, …); the songs
are the distinct ``stim_file`` values in sorted order (numbers 1..K, title the file name, genre unknown).

The tree is read when the data module is given its root (:meth:`BIDSDataset.bind`), so the song table, channels
and rate come from the data, not from code.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

import numpy as np

from datamodules.protocol import DataFormatError, MusicEEGDataset, RecordingRequest, SongInfo
from datamodules.recording import Recording

EEG_EXTENSIONS = (".vhdr", ".edf", ".bdf", ".set")
UNKNOWN_GENRE = "unknown"


class BIDSDataset(MusicEEGDataset):
    """A BIDS-EEG music-listening dataset (see the module docstring); its songs and montage come from :meth:`bind`."""

    # code 100: far above the codes of datasets added by users (3, 4, ...); songs, channels, rate: from bind()
    name, code, aliases, file_pattern = "bids", 100, ("bids-eeg",), "sub-*/**/eeg/*_eeg.*"
    songs: tuple[SongInfo, ...] = ()
    ch_names: tuple[str, ...] = ()
    sfreq = 0.0

    def __init__(self) -> None:
        self.root: Path | None = None
        self.task: str | None = None
        self.stim_files: list[str] = []
        self.subject_labels: list[str] = []

    # ------------------------------------------------------------------------------------------------ the tree
    def bind(self, root: Path, task: str | None = None) -> None:
        """Read the tree's stimuli, subjects, channels and rate (the table's song rows follow)."""
        root = Path(root)
        if self.root == root and self.task == task:
            return
        runs = self._runs(root, task)
        stims: set[str] = set()
        for bids_path, events in runs:
            stims |= {row["stim_file"] for row in _stimulus_rows(events, root)}
        self.stim_files = sorted(stims)
        self.subject_labels = sorted({p.subject for p, _ in runs})
        raw = _read_raw(runs[0][0])
        picks = _eeg_picks(raw)
        self.songs = tuple(SongInfo(i + 1, Path(s).stem, "", UNKNOWN_GENRE) for i, s in enumerate(self.stim_files))
        self.ch_names = tuple(raw.ch_names[i] for i in picks)
        self.sfreq = float(raw.info["sfreq"])
        self.root, self.task = root, task
        from datamodules import registry

        registry._changed()   # the song table follows this dataset's songs

    def _runs(self, root: Path, task: str | None) -> list[tuple]:
        """``(BIDSPath, events.tsv)`` of every EEG recording (of ``task``) under ``root``."""
        from mne_bids import find_matching_paths

        if not (root / "dataset_description.json").is_file():
            raise DataFormatError(f"--data.root {root}: no dataset_description.json — this is not a BIDS dataset's "
                                  "root folder (give the folder holding dataset_description.json and sub-*/)")
        paths = find_matching_paths(root, datatypes="eeg", suffixes="eeg", extensions=list(EEG_EXTENSIONS),
                                    tasks=task)
        if not paths:
            raise DataFormatError(f"--data.root {root}: no EEG recordings{f' of task {task!r}' if task else ''} "
                                  f"(sub-*/eeg/*_eeg{{{','.join(EEG_EXTENSIONS)}}}) — check the folder"
                                  f"{' and --data.task' if task else ''}")
        out = []
        for p in sorted(paths, key=lambda q: str(q.fpath)):
            events = p.copy().update(suffix="events", extension=".tsv").fpath
            if not Path(events).is_file():
                raise DataFormatError(f"{p.fpath}: no events.tsv beside it ({Path(events).name}) — "
                                      "chanmusic needs the stim_file of each stimulus onset")
            out.append((p, Path(events)))
        return out

    def eeg_files(self, root: Path) -> list[Path]:
        """The EEG files and their events.tsv (both fingerprinted by the cache key)."""
        files = [f for f in root.glob(self.file_pattern) if f.is_file()]
        return sorted(files + list(root.glob("sub-*/**/eeg/*_events.tsv")))

    def audio_path(self, audio_root: Path, stimulus: int) -> Path:
        """``stimuli/<stim_file>`` of song ``stimulus`` (1-based, the sorted stim_file values)."""
        return Path(audio_root) / self.stim_files[int(stimulus) - 1]

    def audio_files(self, audio_root: Path) -> list[Path]:
        return [Path(audio_root) / s for s in self.stim_files]

    # ------------------------------------------------------------------------------------------------ reading
    def recordings(self, root: Path, request: RecordingRequest) -> Iterator[Recording]:
        """One recording per events.tsv row with a stimulus: the EEG from its onset, in µV."""
        self.bind(root, self.task)
        number = {label: i + 1 for i, label in enumerate(self.subject_labels)}
        for bids_path, events in self._runs(Path(root), self.task):
            subject = number[bids_path.subject]
            if request.subjects is not None and subject not in request.subjects:
                continue
            raw = _read_raw(bids_path)
            picks = _eeg_picks(raw)
            names = [raw.ch_names[i] for i in picks]
            if names != list(self.ch_names) or float(raw.info["sfreq"]) != self.sfreq:
                raise DataFormatError(f"{bids_path.fpath}: channels or rate differ from the dataset's first "
                                      f"recording ({len(names)} channels at {raw.info['sfreq']:g} Hz vs "
                                      f"{len(self.ch_names)} at {self.sfreq:g} Hz) — give every recording the same "
                                      "EEG channels and rate (or select a task with --data.task)")
            data = raw.get_data(picks=picks) * 1e6   # volts -> µV
            heard: set[str] = set()
            for row in _stimulus_rows(events, Path(root)):
                stim = row["stim_file"]
                if stim in heard:
                    raise DataFormatError(f"{events}: {stim} is heard twice in one recording — chanmusic takes one "
                                          "hearing per stimulus and recording; split the run or drop the repeat")
                heard.add(stim)
                start = int(round(float(row["onset"]) * self.sfreq))
                n = self._length(row, Path(root), stim)
                if start < 0 or start + n > data.shape[1]:
                    raise DataFormatError(f"{events}: the {stim} event ({row['onset']} s + {n / self.sfreq:g} s) "
                                          f"runs past the recording ({data.shape[1] / self.sfreq:g} s) — fix its "
                                          "onset or duration")
                yield self.recording(subject, self.stim_files.index(stim) + 1, data[:, start:start + n],
                                     source=f"{bids_path.fpath}::{stim}@{row['onset']}")

    def _length(self, row: dict, root: Path, stim: str) -> int:
        """Samples of one hearing: its duration, else its audio's length."""
        dur = row.get("duration", "n/a")
        if dur not in ("n/a", "", None):
            return int(round(float(dur) * self.sfreq))
        import soundfile

        return int(soundfile.info(str(root / "stimuli" / stim)).duration * self.sfreq)


def _stimulus_rows(events: Path, root: Path) -> list[dict]:
    """The rows of ``events`` that name a stimulus; refuses a table without ``stim_file`` or a missing file."""
    with open(events, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
        header = rows[0].keys() if rows else []
    if "stim_file" not in header:
        raise DataFormatError(f"{events}: no stim_file column — chanmusic needs to know what was played: add a "
                              "stim_file column naming each stimulus's audio (relative to stimuli/)")
    out = [r for r in rows if r.get("stim_file") not in (None, "", "n/a")]
    for r in out:
        if not (root / "stimuli" / r["stim_file"]).is_file():
            raise DataFormatError(f"{events}: stim_file {r['stim_file']} does not exist "
                                  f"({root / 'stimuli' / r['stim_file']}) — put the audio in the dataset's "
                                  "stimuli/ folder or correct the stim_file")
    return out


def _read_raw(bids_path):
    from mne_bids import read_raw_bids

    return read_raw_bids(bids_path, verbose="error")


def _eeg_picks(raw) -> list[int]:
    import mne

    return list(mne.pick_types(raw.info, eeg=True, exclude=()))

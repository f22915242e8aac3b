"""Reading recordings: :func:`read_recordings` selects the release's files under a root and yields one
:class:`Recording` per participant × stimulus (× hearing), loading one file at a time."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..songs import SONGS, song_of
from .matfile import load_mat
from .recording import NMED_CH_NAMES, NMEDH_HEARINGS, NMEDFormatError, Recording, normalize_dataset
from .sources import check_root, nmedh_sources, nmedt_sources
from .variables import check_data, check_finite, parse_fs, parse_subjects


def read_recordings(
    root: str | Path,
    dataset: str = "nmed-t",
    songs: Iterable[int] | None = None,
    subjects: Iterable[int] | None = None,
    conditions: Sequence[str] | None = None,
    hearings: Sequence[str] | None = None,
    stimuli: Iterable[int] | None = None,
    expected_sfreq: float | None = None,
    require_subjects: bool = True,
) -> Iterator[Recording]:
    """Yield one :class:`Recording` per participant × stimulus (× hearing) found under ``root``.

    Args:
        root: folder in the NMED-T (``songNN_Imputed.mat``) or NMED-H
            (``CleanEEG_aggregatedByStimulus_<cond>.zip``) release layout.
        dataset: ``"nmed-t"`` or ``"nmed-h"``.
        songs: global song indices (:data:`datamodules.songs.SONGS` rows) to read; default all.
        subjects: participant ids (as in ``subsNN``) to read; default all. An id found in no file
            read is an error (raised once all files have been read).
        conditions: NMED-H conditions (``orig``, ``rev``, ``phase``, ``meas``); default every
            condition whose archive is present (see the module docstring). Ignored for NMED-T.
        hearings: NMED-H hearings (``"a"``, ``"b"``); default both. Ignored for NMED-T.
        stimuli: release numbers (``songNN``) to read; default all.
        expected_sfreq: if given, every file's ``fs`` must equal it.
        require_subjects: a requested participant found in no file is an error (``False``: the caller checks,
            as ``prepare`` does for a pool of datasets).

    Every file's ``fs`` must also equal the first file's. Files are loaded one at a time.
    """
    dataset = normalize_dataset(dataset)
    root = Path(root).expanduser()
    check_root(root, dataset)
    if dataset == "nmed-t":
        sources = nmedt_sources(root)
    else:
        sources = nmedh_sources(root, conditions)
        if hearings is not None:
            hearings = [hearings] if isinstance(hearings, str) else list(hearings)
            bad = [h for h in hearings if h not in NMEDH_HEARINGS]
            if bad:
                raise NMEDFormatError(f"unknown NMED-H hearing(s) {bad}: expected 'a' and/or 'b'")
            present = sorted({s.hearing for s in sources})
            sources = [s for s in sources if s.hearing in hearings]
            if not sources:
                raise NMEDFormatError(f"--data.hearings: no NMED-H member under {root} has hearing {hearings} "
                                      f"(the files hold {present}) — choose from {present}")

    if songs is not None:
        songs = sorted({int(s) for s in songs})
        valid = [s.index for s in SONGS if s.dataset == dataset]
        bad = [s for s in songs if s not in valid]
        if bad:
            raise NMEDFormatError(
                f"song(s) {bad} are not {dataset} songs: its global song indices are {valid}"
            )
        have = {song_of(dataset, s.stimulus).index for s in sources}
        absent = [s for s in songs if s not in have]
        if absent:
            raise NMEDFormatError(
                f"song(s) {absent} requested but no file under {root} holds them "
                f"(the files found hold songs {sorted(have)})"
            )
        sources = [s for s in sources if song_of(dataset, s.stimulus).index in songs]
    if stimuli is not None:
        stimuli = sorted({int(n) for n in stimuli})
        have = {s.stimulus for s in sources}
        absent = [n for n in stimuli if n not in have]
        if absent:
            raise NMEDFormatError(
                f"stimulus number(s) {absent} requested but not found under {root} "
                f"(selected files hold {sorted(have)})"
            )
        sources = [s for s in sources if s.stimulus in stimuli]
    if not sources:
        raise NMEDFormatError(f"the selection matches no file under {root}")
    wanted_subjects = None if subjects is None else {int(s) for s in subjects}
    if wanted_subjects is not None and not wanted_subjects:
        raise NMEDFormatError("subjects=[] selects nothing; pass None for all participants")

    return _iter_recordings(dataset, sources, wanted_subjects, expected_sfreq, root, require_subjects)


def _iter_recordings(dataset, sources, wanted_subjects, expected_sfreq, root, require_subjects=True
                     ) -> Iterator[Recording]:
    first_fs: tuple[float, str] | None = None
    seen_subjects: set[int] = set()
    for src in sources:
        suffix = "" if dataset == "nmed-t" else f"_{src.hearing}"
        data_var, subs_var = f"data{src.stimulus}{suffix}", f"subs{src.stimulus}{suffix}"
        mat = load_mat(src.label, src.open(), [data_var, subs_var, "fs"])
        fs = parse_fs(src.label, mat["fs"])
        if expected_sfreq is not None and not np.isclose(fs, float(expected_sfreq)):
            raise NMEDFormatError(
                f"{src.label}: fs = {fs:g} Hz but {float(expected_sfreq):g} Hz is expected (the release's "
                f"cleaned EEG is at 125 Hz) — resample the file, or pass --data.expected_sfreq {fs:g} if every "
                "file is at that rate"
            )
        if first_fs is None:
            first_fs = (fs, src.label)
        elif not np.isclose(fs, first_fs[0]):
            raise NMEDFormatError(
                f"{src.label}: fs = {fs:g} Hz but {first_fs[1]} has fs = {first_fs[0]:g} Hz; all files of "
                "a dataset must share one sampling rate — resample the odd file"
            )
        ids = parse_subjects(src.label, subs_var, mat[subs_var])
        data = check_data(src.label, data_var, mat[data_var], len(ids), subs_var)
        del mat
        check_finite(src.label, data_var, data, ids)
        seen_subjects.update(ids)
        song = song_of(dataset, src.stimulus).index
        for s, sid in enumerate(ids):
            if wanted_subjects is not None and sid not in wanted_subjects:
                continue
            yield Recording(
                dataset=dataset, subject=sid, song=song,
                eeg=np.ascontiguousarray(data[:, :, s], dtype=np.float32),
                sfreq=fs, ch_names=list(NMED_CH_NAMES), stimulus=src.stimulus,
                condition=src.condition, hearing=src.hearing, source=src.label,
            )
        del data
    if wanted_subjects is not None and require_subjects:
        missing = sorted(wanted_subjects - seen_subjects)
        if missing:
            raise NMEDFormatError(
                f"participant(s) {missing} requested but found in no file read under {root} "
                f"(participants present: {sorted(seen_subjects)})"
            )


"""Folds of a comparison: which subjects (``folds: subjects k=5``) or songs (``folds: songs k=7``) each fold holds out.

Every run is repeated once per fold. By subjects: ``data.split: subjects`` and ``data.test_subjects`` set to the
fold's subjects (validation is carved from the other subjects' windows; see ``experiments/data/cross_subject.yaml``);
the subjects are read from the prepared cache of the data the runs use (its ``recordings.json``), sorted, and dealt
out round-robin: fold ``i`` holds out ``ids[i::k]``. By songs (new music): ``data.split: songs`` and
``data.test_songs`` set to the fold's songs, dealt from the cache's songs so that each fold's songs span genres
where possible (:func:`datamodules.song_split.stratified_folds`); the fold's pretraining gets the same split, so it
never sees its test songs' EEG. The assignment is written to ``OUT/folds.json``.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from chanmusic.core.errors import InputError
from chanmusic.runner.cache_pass import data_settings
from chanmusic.runner.plan import Step


def _recordings(step: Step, extra_args: list[str], what: str) -> list[dict]:
    """The ``recordings.json`` of the prepared cache that ``step`` reads (its ``data:`` settings as the CLI sees
    them)."""
    from datamodules.datamodule import NMEDDataModule

    data = data_settings(step.configs, (step.set or {}).get("data") or {}, extra_args)
    accepted = set(inspect.signature(NMEDDataModule.__init__).parameters) - {"self"}
    dm = NMEDDataModule(**{k: v for k, v in data.items() if k in accepted})
    path = dm.cache_path() / "recordings.json"
    if not path.is_file():
        raise InputError("folds", f"no prepared cache at {path.parent} to read the {what} from (see "
                         "OUT/prepare/*/log.txt)", "fix the data settings or run `chanmusic prepare` with them")
    return json.loads(path.read_text())


def subject_ids(step: Step, extra_args: list[str]) -> list[Any]:
    """The subject ids in the prepared cache that ``step`` reads."""
    recs = _recordings(step, extra_args, "subjects")
    return sorted({r["subject"] for r in recs}, key=lambda s: (str(type(s)), s))


def song_ids(step: Step, extra_args: list[str]) -> list[int]:
    """The global song ids in the prepared cache that ``step`` reads."""
    return sorted({int(r["song"]) for r in _recordings(step, extra_args, "songs")})


def assign(subjects: list[Any], k: int) -> list[list[Any]]:
    """Deal sorted ``subjects`` into ``k`` folds round-robin (fold ``i`` = ``subjects[i::k]``)."""
    if len(subjects) < 2 or k > len(subjects):
        raise InputError("folds", f"k={k} folds by subjects need at least max(k, 2) subjects, the data has "
                         f"{len(subjects)}", f"use 2 <= k <= {len(subjects)}")
    return [list(subjects[i::k]) for i in range(k)]


def assign_songs(songs: list[int], k: int) -> list[list[int]]:
    """``k`` folds of held-out songs spanning genres (the song table's), at least two songs each."""
    from datamodules.song_split import MIN_TEST_SONGS, stratified_folds
    from datamodules.songs import SONGS

    try:
        return stratified_folds(songs, {s: SONGS[s].genre for s in songs}, k)
    except ValueError as e:
        most = len(songs) // MIN_TEST_SONGS
        raise InputError("folds", f"songs k={k}: {e} (the data has songs {sorted(songs)})",
                         f"use 2 <= k <= {most}" if most >= 2 else
                         f"select at least {2 * MIN_TEST_SONGS} songs (2 folds of {MIN_TEST_SONGS})") from None


def resolve(by: str, step: Step, extra_args: list[str], k: int) -> list[list[Any]]:
    """The held-out groups of ``k`` folds ``by`` subjects or songs, from the cache ``step`` reads."""
    if by == "songs":
        return assign_songs(song_ids(step, extra_args), k)
    return assign(subject_ids(step, extra_args), k)


def record(out: Path, folds: dict, assigned: list[list[Any]]) -> None:
    """``OUT/folds.json``: the fold setting and the subjects (or songs) each fold holds out."""
    out.mkdir(parents=True, exist_ok=True)
    key = "test_songs" if folds.get("by") == "songs" else "test_subjects"
    (out / "folds.json").write_text(json.dumps({**folds, key: assigned}, indent=2, default=str))

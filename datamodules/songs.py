"""The song table: every song of every registered dataset, one row each, the only place song metadata is looked up.

``song`` everywhere in chanmusic is a row index of :data:`SONGS`. The rows are the datasets' songs
(:attr:`datamodules.protocol.MusicEEGDataset.songs`) in the dataset table's code order: NMED-T's ten are 0-9, NMED-H's
four 10-13, a dataset registered later follows. :data:`GENRES` is the sorted set of their genre labels (NMED: ten).
Both are read from the table (:mod:`datamodules.registry`) when used — the dataset modules below the table import
this module — so a dataset registered later is in them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence


@dataclass(frozen=True)
class Song:
    index: int          # global song id used in batches and metrics
    dataset: str        # the dataset's name, e.g. "nmed-t"
    number: int         # the dataset's number of the intact stimulus (NMED: songNN)
    title: str
    artist: str
    genre: str
    bpm: float | None = None


class _Table(Sequence):
    """A read-only sequence read from the dataset table each time (so it follows ``registry.register``)."""

    def __init__(self, rows: str) -> None:
        self._rows = rows

    def _all(self) -> tuple:
        from datamodules import registry

        return getattr(registry, self._rows)()

    def __len__(self) -> int:
        return len(self._all())

    def __getitem__(self, i):
        return self._all()[i]

    def __iter__(self) -> Iterator:
        return iter(self._all())

    def __repr__(self) -> str:
        return repr(self._all())


SONGS: Sequence[Song] = _Table("song_table")
GENRES: Sequence[str] = _Table("genre_table")


def song_of(dataset: str, number: int) -> Song:
    """The song heard in ``dataset``'s stimulus ``number`` (a version of a song, e.g. NMED-H's reversed one, maps to
    the song); ``ValueError`` for a number the dataset does not have."""
    from datamodules.registry import get_dataset

    ds = get_dataset(dataset)
    base = ds.song_number(number)
    return next(s for s in SONGS if s.dataset == ds.name and s.number == base)


def genre_index(song: int) -> int:
    """Index into :data:`GENRES` of a global song id."""
    return list(GENRES).index(SONGS[song].genre)

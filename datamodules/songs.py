"""The 14 songs of NMED-T and NMED-H: one table, the only place song metadata lives.

``song`` everywhere in chanmusic is the row index of :data:`SONGS` (0..13). NMED-T files are named by
their release number (21..30); NMED-H stimuli are numbered 21..36, four conditions of four songs
(``orig`` 21-24, ``rev`` 25-28, ``phase`` 29-32, ``meas`` 33-36, a third-party mapping that
``datamodules.nmed`` checks against the files it reads) and map onto the four base songs.

Genres: no public source gives the paper's 10-genre labels, so the mapping below is our documented
decision (one label per song, from the artists' commonly listed styles; NMED-T's two house tracks
share a label and the four Hindi pop songs share one).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Song:
    index: int          # global song id used in batches and metrics
    dataset: str        # "nmed-t" | "nmed-h"
    number: int         # release number of the intact stimulus (songNN)
    title: str
    artist: str
    genre: str
    bpm: float | None = None


SONGS: tuple[Song, ...] = (
    Song(0, "nmed-t", 21, "First Fires", "Bonobo", "downtempo", 55.97),
    Song(1, "nmed-t", 22, "Oino", "LA Priest", "psychedelic-pop", 69.44),
    Song(2, "nmed-t", 23, "Tiptoes", "Daedelus", "idm", 74.26),
    Song(3, "nmed-t", 24, "Careless Love", "Croquet Club", "house", 82.42),
    Song(4, "nmed-t", 25, "Lebanese Blonde", "Thievery Corporation", "trip-hop", 91.46),
    Song(5, "nmed-t", 26, "Canopée", "Polo & Pan", "nu-disco", 96.16),
    Song(6, "nmed-t", 27, "Doing Yoga", "Kazy Lambist", "electropop", 108.70),
    Song(7, "nmed-t", 28, "Until the Sun Needs to Rise", "RÜFÜS DU SOL", "house", 120.00),
    Song(8, "nmed-t", 29, "Silent Shout", "The Knife", "synth-pop", 128.21),
    Song(9, "nmed-t", 30, "The Last Thing You Should Do", "David Bowie", "art-rock", 150.00),
    Song(10, "nmed-h", 21, "Ainvayi Ainvayi", "Salim Merchant", "bollywood-pop"),
    Song(11, "nmed-h", 22, "Daaru Desi", "Benni Dayal, Shalmali Kholgade", "bollywood-pop"),
    Song(12, "nmed-h", 23, "Haule Haule", "Salim-Sulaiman", "bollywood-pop"),
    Song(13, "nmed-h", 24, "Malang", "Shilpa Rao, Siddharth Mahadevan", "bollywood-pop"),
)

GENRES: tuple[str, ...] = tuple(sorted({s.genre for s in SONGS}))
assert len(GENRES) == 10, GENRES

# NMED-H stimulus number -> (condition, base release number)
NMEDH_CONDITIONS: dict[str, int] = {"orig": 21, "rev": 25, "phase": 29, "meas": 33}


def song_of(dataset: str, number: int) -> Song:
    """The song heard in ``dataset``'s stimulus ``number`` (NMED-H conditions map to their base song)."""
    if dataset == "nmed-h":
        for cond, first in NMEDH_CONDITIONS.items():
            if first <= number < first + 4:
                number = 21 + number - first
                break
    for s in SONGS:
        if s.dataset == dataset and s.number == number:
            return s
    known = sorted({s.number for s in SONGS if s.dataset == dataset})
    raise ValueError(
        f"unknown song number {number} for {dataset}: the release numbers are {known}"
        + (" (NMED-H stimuli 21-36)" if dataset == "nmed-h" else "")
    )


def condition_of(dataset: str, number: int) -> str:
    """NMED-H condition name of a stimulus number; ``"orig"`` for NMED-T."""
    if dataset != "nmed-h":
        return "orig"
    for cond, first in NMEDH_CONDITIONS.items():
        if first <= number < first + 4:
            return cond
    raise ValueError(f"unknown NMED-H stimulus number {number}: expected 21-36")


def genre_index(song: int) -> int:
    """Index into :data:`GENRES` of a global song id."""
    return GENRES.index(SONGS[song].genre)

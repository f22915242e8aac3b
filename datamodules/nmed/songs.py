"""The songs of NMED-T and NMED-H and NMED-H's stimulus numbering: release facts, given to the song table
(:mod:`datamodules.songs`) by the two datasets (:mod:`datamodules.nmed.datasets`).

NMED-T files are named by their release number (21..30); NMED-H stimuli are numbered 21..36, four conditions of four
songs (``orig`` 21-24, ``rev`` 25-28, ``phase`` 29-32, ``meas`` 33-36, a third-party mapping that the reader checks
against the files it reads) and map onto the four base songs.

Genres: no public source gives the paper's 10-genre labels, so the labels below are our documented decision (one
label per song, from the artists' commonly listed styles; NMED-T's two house tracks share a label and the four Hindi
pop songs share one).
"""
from __future__ import annotations

from ..protocol import SongInfo

NMEDT_SONGS: tuple[SongInfo, ...] = (
    SongInfo(21, "First Fires", "Bonobo", "downtempo", 55.97),
    SongInfo(22, "Oino", "LA Priest", "psychedelic-pop", 69.44),
    SongInfo(23, "Tiptoes", "Daedelus", "idm", 74.26),
    SongInfo(24, "Careless Love", "Croquet Club", "house", 82.42),
    SongInfo(25, "Lebanese Blonde", "Thievery Corporation", "trip-hop", 91.46),
    SongInfo(26, "Canopée", "Polo & Pan", "nu-disco", 96.16),
    SongInfo(27, "Doing Yoga", "Kazy Lambist", "electropop", 108.70),
    SongInfo(28, "Until the Sun Needs to Rise", "RÜFÜS DU SOL", "house", 120.00),
    SongInfo(29, "Silent Shout", "The Knife", "synth-pop", 128.21),
    SongInfo(30, "The Last Thing You Should Do", "David Bowie", "art-rock", 150.00),
)
NMEDH_SONGS: tuple[SongInfo, ...] = (
    SongInfo(21, "Ainvayi Ainvayi", "Salim Merchant", "bollywood-pop"),
    SongInfo(22, "Daaru Desi", "Benni Dayal, Shalmali Kholgade", "bollywood-pop"),
    SongInfo(23, "Haule Haule", "Salim-Sulaiman", "bollywood-pop"),
    SongInfo(24, "Malang", "Shilpa Rao, Siddharth Mahadevan", "bollywood-pop"),
)

# NMED-H condition -> the stimulus number of its first song
NMEDH_CONDITIONS: dict[str, int] = {"orig": 21, "rev": 25, "phase": 29, "meas": 33}


def nmedh_base_number(stimulus: int) -> int:
    """The base song number (21-24) of an NMED-H stimulus; ``ValueError`` outside 21-36."""
    for first in NMEDH_CONDITIONS.values():
        if first <= stimulus < first + 4:
            return 21 + stimulus - first
    known = sorted(s.number for s in NMEDH_SONGS)
    raise ValueError(f"unknown song number {stimulus} for nmed-h: the release numbers are {known} "
                     "(NMED-H stimuli 21-36)")


def condition_of(dataset: str, number: int) -> str:
    """NMED-H condition name of a stimulus number; ``"orig"`` for NMED-T."""
    if dataset != "nmed-h":
        return "orig"
    for cond, first in NMEDH_CONDITIONS.items():
        if first <= number < first + 4:
            return cond
    raise ValueError(f"unknown NMED-H stimulus number {number}: expected 21-36")

"""The dataset table: every dataset chanmusic can read, by name — NMED-T and NMED-H built in, others added with
:func:`register`.

Everything that differs between datasets is asked of the table, never written as a name: the names
``--data.dataset`` accepts (:func:`dataset_name` also takes other spellings), their canonical order in a pool
(:func:`names`: by ``code``), the subject namespace (:func:`subject_offset`: 1000 × (code − 1); NMED-T 0, NMED-H
1000), the seed code of per-recording draws (:func:`dataset_code`), and the song table (:func:`song_table`: each
dataset's songs in code order, so NMED-T's ten are songs 0-9 and NMED-H's four 10-13).

A dataset added later (``docs/datasets.md``) takes the next free code; its subjects and songs then follow the
built-in ones. Its module registers it when imported; the modules named in ``$CHANMUSIC_DATASETS`` (comma-separated)
are imported on the table's first use, so the CLI and the processes it starts know them too.
"""
from __future__ import annotations

import importlib
import os
from functools import lru_cache

from chanmusic.core.errors import InputError

from datamodules.nmed.datasets import NMEDH, NMEDT
from datamodules.protocol import MusicEEGDataset, spelling_key
from datamodules.songs import Song

__all__ = ["bind_roots", "dataset_code", "dataset_name", "genre_table", "get_dataset", "names", "register", "song_table",
           "subject_offset", "unregister"]

#: subjects of a dataset are namespaced as SUBJECTS_PER_DATASET × (code − 1) + the dataset's own id (0-999)
SUBJECTS_PER_DATASET = 1000
_TABLE: dict[str, MusicEEGDataset] = {}
_LISTED = "CHANMUSIC_DATASETS"
_listed_imported = False


def register(dataset: MusicEEGDataset) -> MusicEEGDataset:
    """Add ``dataset`` to the table (an instance of a :class:`~datamodules.protocol.MusicEEGDataset` subclass) and
    return it; ``ValueError`` when its name, a spelling or its code is taken, or its class attributes are off."""
    name = str(getattr(dataset, "name", ""))
    if not name or name != name.lower() or not spelling_key(name):
        raise ValueError(f"dataset {name!r}: a dataset needs a lower-case name with letters or digits, e.g. 'nmed-t'")
    taken = {spelling_key(a): d.name for d in _TABLE.values() for a in (d.name, *d.aliases)}
    clash = [a for a in (name, *dataset.aliases) if spelling_key(a) in taken]
    if clash:
        raise ValueError(f"dataset {name!r}: the name {clash[0]!r} is taken by {taken[spelling_key(clash[0])]!r} — "
                         "choose another name or alias")
    code = dataset.code
    if isinstance(code, bool) or not isinstance(code, int) or code < 1 or any(d.code == code for d in _TABLE.values()):
        free = 1 + max((d.code for d in _TABLE.values()), default=0)
        raise ValueError(f"dataset {name!r}: code {code!r} is not a free positive integer — use {free}")
    numbers = [s.number for s in dataset.songs]
    if not numbers or len(set(numbers)) != len(numbers):
        raise ValueError(f"dataset {name!r}: songs {numbers} — give each song once, by its own number")
    if not dataset.ch_names or not float(dataset.sfreq) > 0:
        raise ValueError(f"dataset {name!r}: needs ch_names and a positive sfreq")
    _TABLE[name] = dataset
    _changed()
    return dataset


def unregister(name: str) -> None:
    """Remove a dataset registered with :func:`register` (the built-in ones stay)."""
    if name in _BUILT_IN:
        raise ValueError(f"dataset {name!r} is built in and cannot be removed")
    _TABLE.pop(name, None)
    _changed()


def names() -> tuple[str, ...]:
    """The datasets' names in the table's order (by code): NMED-T, NMED-H, then any registered later."""
    return tuple(d.name for d in sorted(_table().values(), key=lambda d: d.code))


def get_dataset(name: str) -> MusicEEGDataset:
    """The dataset called ``name`` (or any spelling :func:`dataset_name` accepts); ``ValueError`` if none is."""
    canonical = dataset_name(name)
    if canonical is None:
        raise ValueError(f"unknown dataset {name!r}: the table holds {', '.join(names())}")
    return _table()[canonical]


def dataset_name(spelling: object) -> str | None:
    """A dataset's name from any common spelling (NMED-T, nmedt, nmed_t, t …), or ``None``."""
    key = spelling_key(spelling)
    for d in _table().values():
        if key in {spelling_key(a) for a in (d.name, *d.aliases)}:
            return d.name
    return None


def dataset_code(name: str) -> int:
    """The dataset's code: part of the seed of every per-recording draw (split spans, control shifts)."""
    return get_dataset(name).code


def subject_offset(name: str) -> int:
    """What the dataset's subject ids are shifted by to be unique in a pool (NMED-T 0, NMED-H 1000)."""
    return SUBJECTS_PER_DATASET * (get_dataset(name).code - 1)


@lru_cache(maxsize=1)
def song_table() -> tuple[Song, ...]:
    """Every registered dataset's songs, as global :class:`~datamodules.songs.Song` rows (index = row)."""
    rows: list[Song] = []
    for name in names():
        for s in _table()[name].songs:
            rows.append(Song(len(rows), name, s.number, s.title, s.artist, s.genre, s.bpm))
    return tuple(rows)


@lru_cache(maxsize=1)
def genre_table() -> tuple[str, ...]:
    """The sorted genre labels of :func:`song_table` (NMED: ten)."""
    return tuple(sorted({s.genre for s in song_table()}))


def _changed() -> None:
    song_table.cache_clear()
    genre_table.cache_clear()


def _table() -> dict[str, MusicEEGDataset]:
    """The table, once the modules named in ``$CHANMUSIC_DATASETS`` are imported (each registers its datasets)."""
    global _listed_imported
    if not _listed_imported:
        _listed_imported = True
        for module in (m.strip() for m in os.environ.get(_LISTED, "").split(",")):
            if not module:
                continue
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as e:
                raise InputError(f"${_LISTED}", f"no module {module!r} ({e})",
                                 "put the folder holding it on PYTHONPATH, or correct the name") from e
    return _TABLE


register(NMEDT())
register(NMEDH())
# BIDS: songs, channels and rate are read from the tree when a data module binds its root (bind_roots); until then
# it adds no song rows, so the table of the other datasets is unchanged
from datamodules.bids import BIDSDataset  # noqa: E402

_TABLE[BIDSDataset.name] = BIDSDataset()
_BUILT_IN = frozenset(_TABLE)


def bind_roots(dataset: object, root: object, audio_root: object = None, task: str | None = None) -> None:
    """Datasets described by their files (BIDS) read their songs, channels and rate from their root now, before
    the data settings are checked against them (other datasets: nothing to do)."""
    spelled = [dataset] if isinstance(dataset, str) else list(dataset or [])
    named = [dataset_name(d) for d in spelled]
    if not any(n and hasattr(_table()[n], "bind") for n in named):
        return
    from datamodules.selection import parse_datasets, resolve_sources

    for src in resolve_sources(parse_datasets(dataset), root, audio_root):
        ds = get_dataset(src.dataset)
        if hasattr(ds, "bind"):
            ds.bind(src.root, task)

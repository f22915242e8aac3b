"""Which data a run reads: the datasets (any of the dataset table's, :mod:`datamodules.registry`), a root and an
audio folder per dataset, subjects (namespaced by dataset), hearings. One place for these rules, shared by the data
module (cache key, split, control) and ``prepare`` (reading); every per-dataset fact is asked of the table.

**Pooling.** ``dataset`` is one name (``"nmed-t"``, ``"nmed-h"``, …) or a list (the paper's pool, NMED-T and
NMED-H: 20 + 48 = 68 subjects, 10 + 4 = 14 songs). Songs are global ids (:data:`datamodules.songs.SONGS` rows)
already; subjects are made global here: :func:`subject_id` adds the dataset's offset (NMED-T ids as in the release,
NMED-H ids +1000), so participant 3 of NMED-T and participant 3 of NMED-H are two people in every split, batch and
metric.

**Roots.** One dataset: ``root`` is its folder. Several: a mapping ``{nmed-t: DIR, nmed-h: DIR}``, a list in
``dataset`` order, or one folder holding a subfolder per dataset, named as it (``nmed-t/``, ``nmed-h/``: the demo's
layout). Audio: default ``<root>/stimuli`` per dataset; datasets number their songs independently (both NMED
releases from 21), so a pool needs one audio folder per dataset (a mapping), never one shared folder.

**Subject references** (``subjects``, ``test_subjects``): an int is a dataset's own id (NMED: ``subsNN``); in a
pool an int found in two datasets is ambiguous — write ``"nmed-t:3"`` / ``"nmed-h:3"``. ``test_subjects`` also
accepts global ids as batches carry them (NMED-H ids + 1000), e.g. listed from a prepared cache.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from datamodules.recording import HEARINGS
from datamodules.registry import SUBJECTS_PER_DATASET, dataset_name, get_dataset, names, subject_offset
from datamodules.songs import SONGS
from datamodules.validate import SettingError, dataset_choices


class SelectionError(SettingError):
    """A data setting (``--data.*``) that cannot be honoured on this data: ``--data.<field>: <what> — <fix>``
    (a :class:`datamodules.validate.SettingError`: one line, exit code 2)."""

    def __init__(self, message: str) -> None:
        ValueError.__init__(self, message)
        self.where, _, rest = message.partition(": ")
        self.what, _, self.fix = rest.partition(" — ")


def normalize(name: Any) -> str:
    """:func:`datamodules.registry.dataset_name`, or a one-line ``--data.dataset`` error."""
    canonical = dataset_name(name)
    if canonical is not None:
        return canonical
    raise SelectionError(f"--data.dataset: {name!r} is not a dataset — use {dataset_choices()}")


def parse_datasets(dataset: str | Sequence[str]) -> list[str]:
    """The selected datasets in the table's order (``nmed-t`` before ``nmed-h``), each once."""
    given = [dataset] if isinstance(dataset, str) else list(dataset)
    if not given:
        raise SelectionError(f"--data.dataset: empty list — use {dataset_choices()}")
    chosen = {normalize(n) for n in given}
    return [d for d in names() if d in chosen]


def subject_id(dataset: str, subject: int) -> int:
    """Global subject id: the dataset's own id plus its offset (:func:`datamodules.registry.subject_offset`)."""
    subject = int(subject)
    if not 0 <= subject < SUBJECTS_PER_DATASET:
        raise SelectionError(f"subject id {subject} of {dataset} is outside 0-999: chanmusic namespaces subjects "
                             f"as dataset offset + id — renumber the participants in subsNN")
    return subject_offset(dataset) + subject


def subject_name(sid: int) -> str:
    """``"nmed-h:3"`` for global id 1003."""
    ds = max((d for d in names() if subject_offset(d) <= sid), key=subject_offset)
    return f"{ds}:{sid - subject_offset(ds)}"


@dataclass(frozen=True)
class DatasetSource:
    """One selected dataset: its release folder and its audio folder."""

    dataset: str
    root: Path
    audio_root: Path


def _per_dataset(value: Any, datasets: list[str], field: str) -> dict[str, Any] | None:
    """A mapping/list given per dataset -> ``{dataset: value}``; a scalar -> ``None``."""
    if isinstance(value, Mapping):
        out = {normalize(k): v for k, v in value.items()}
        missing = [d for d in datasets if d not in out]
        if missing:
            given = ", ".join(f"{d}: DIR" for d in datasets)
            raise SelectionError(f"--data.{field}: no folder for {', '.join(missing)} — give one per dataset: "
                                 f"--data.{field} '{{{given}}}'")
        return {d: out[d] for d in datasets}
    if isinstance(value, (list, tuple)):
        if len(value) != len(datasets):
            raise SelectionError(f"--data.{field}: {len(value)} folder(s) for {len(datasets)} dataset(s) {datasets} — "
                                 f"give one per dataset, in that order, or a mapping {_dirs(names())}")
        return dict(zip(datasets, value))
    return None


def resolve_sources(datasets: list[str], root: Any, audio_root: Any = None) -> list[DatasetSource]:
    """One :class:`DatasetSource` per dataset (see the module docstring for the accepted forms)."""
    roots = _per_dataset(root, datasets, "root")
    if roots is None:
        base = Path(str(root)).expanduser()
        if len(datasets) == 1:
            roots = {datasets[0]: base}
        else:
            roots = {d: base / d for d in datasets}
            absent = [d for d in datasets if not roots[d].is_dir()]
            if absent:
                raise SelectionError(
                    f"--data.root: {base} is one folder for {len(datasets)} datasets and has no "
                    f"{', '.join(d + '/' for d in absent)} subfolder — give a root per dataset: "
                    f"--data.root '{_dirs(datasets)}' (or put the releases in "
                    f"{' and '.join(f'{base}/{d}' for d in datasets)})")
    audio = _per_dataset(audio_root, datasets, "audio_root") if audio_root else None
    if audio_root and audio is None:
        if len(datasets) > 1:
            raise SelectionError(
                f"--data.audio_root: one audio folder for {_both(datasets)} datasets, but "
                f"{' and '.join(d.upper() for d in datasets)} {_each_numbers(datasets)} — give one per dataset: "
                f"--data.audio_root '{_dirs(datasets)}', or leave it out (default <root>/stimuli)")
        audio = {datasets[0]: audio_root}
    out = []
    for d in datasets:
        r = Path(str(roots[d])).expanduser()
        a = Path(str(audio[d])).expanduser() if audio else r / "stimuli"
        out.append(DatasetSource(d, r, a))
    _check_audio_not_crossed(out)
    return out


def _check_audio_not_crossed(sources: list[DatasetSource]) -> None:
    """Refuse a pool whose audio folders cross: one folder for two datasets, or a dataset's audio inside another
    dataset's root (NMED-T and NMED-H both name their songs song21…: a swapped folder would pair every window
    with another release's song, and nothing in the files tells the two apart)."""
    if len(sources) < 2:
        return
    full = [(s, s.root.absolute(), s.audio_root.absolute()) for s in sources]
    for i, (s, _, a) in enumerate(full):
        for t, rt, b in full[i + 1:]:
            if a == b:
                raise SelectionError(f"--data.audio_root: {a} is the audio folder of both {s.dataset} and "
                                     f"{t.dataset}, which number their songs alike — give each dataset its own "
                                     f"folder: --data.audio_root '{_dirs([x.dataset for x in sources])}'")
        owners = [(len(rt.parts), t.dataset) for t, rt, _ in full if a == rt or rt in a.parents]
        owner = max(owners)[1] if owners else s.dataset
        if owner != s.dataset:
            raise SelectionError(f"--data.audio_root: {s.dataset}'s audio folder {a} lies in {owner}'s release "
                                 f"folder (the folders look swapped: both number their songs from 21) — give "
                                 f"{s.dataset} the folder of its own songs (default <its root>/stimuli)")


def input_files(src: DatasetSource) -> list[Path]:
    """The EEG files (and stimulus audio) of one dataset, as its protocol finds them; errors name ``data.root``."""
    if not src.root.is_dir():
        raise SelectionError(f"--data.root: {src.root} is not a folder — point --data.root at the "
                                f"{src.dataset.upper()} release folder (or run `make demo` for demo data)")
    ds = get_dataset(src.dataset)
    if not any(src.root.glob(ds.file_pattern)):
        raise SelectionError(f"--data.root: no {ds.file_pattern} files in {src.root} for "
                             f"--data.dataset {src.dataset} — is this the right folder / dataset?")
    return ds.eeg_files(src.root) + ds.audio_files(src.audio_root)


def _dirs(datasets: Sequence[str]) -> str:
    """``{nmed-t: DIR, nmed-h: DIR}``: a folder per dataset, as a setting spells it."""
    return "{" + ", ".join(f"{d}: DIR" for d in datasets) + "}"


def _both(datasets: Sequence[str]) -> str:
    return "both" if len(datasets) == 2 else f"all {len(datasets)}"


def _each_numbers(datasets: Sequence[str]) -> str:
    """Why one audio folder cannot serve ``datasets``: which stimulus numbers they share."""
    firsts = {min(s.number for s in get_dataset(d).songs) for d in datasets}
    if len(firsts) == 1:
        n = firsts.pop()
        return (f"{_both(datasets)} number their songs from {n} (song{n}.wav is a different song in each)")
    return "number their songs independently (one songNN.wav name can be a different song in each)"


def multi_hearing(datasets: Sequence[str]) -> list[str]:
    """The datasets among ``datasets`` whose participants heard each stimulus twice (NMED-H)."""
    return [d for d in datasets if len(get_dataset(d).hearings) > 1]


def check_hearings(hearings: Sequence[str] | None, datasets: list[str], split: str) -> list[str]:
    """The hearings to read (``a`` first, ``b`` second hearing) of the datasets that have two (NMED-H); the others
    have one (``a``). ``None``: ``[a]`` (the authors' choice), or ``[a, b]`` for the hearing split, which needs both."""
    if split == "hearing" and not multi_hearing(datasets):
        have = multi_hearing(names())
        raise SelectionError(f"--data.split: hearing tests on second hearings, which only "
                             f"{' and '.join(d.upper() for d in have)} {'has' if len(have) == 1 else 'have'} — add "
                             f"{' or '.join(have)} to data.dataset or choose another data.split")
    if hearings is None:
        hearings = list(HEARINGS) if split == "hearing" else ["a"]
    hearings = [hearings] if isinstance(hearings, str) else list(hearings)
    bad = [h for h in hearings if h not in HEARINGS]
    if bad or not hearings:
        raise SelectionError(f"--data.hearings: {bad or '[]'} — use [a] (first hearing, the default), [b] or [a, b]")
    if not multi_hearing(datasets) and hearings != ["a"]:
        raise SelectionError(f"--data.hearings: {hearings} but {' and '.join(d.upper() for d in datasets)} "
                             f"{'has' if len(datasets) == 1 else 'have'} one hearing — leave data.hearings at [a]")
    if split == "hearing" and set(hearings) != set(HEARINGS):
        raise SelectionError("--data.hearings: the hearing split trains on first and tests on second hearings — "
                             "set --data.hearings [a,b]")
    return sorted(set(hearings))


def parse_subject_refs(refs: Iterable[int | str] | None, datasets: list[str], field: str
                       ) -> tuple[dict[str, set[int]], set[int]] | None:
    """``subjects`` / ``test_subjects`` -> ({dataset: release ids named with a prefix}, bare release ids)."""
    if refs is None:
        return None
    named: dict[str, set[int]] = {d: set() for d in datasets}
    bare: set[int] = set()
    for r in refs:
        s = str(r).strip()
        m = re.fullmatch(r"([A-Za-z][A-Za-z0-9_-]*)\s*:\s*(\d+)", s)
        if m:
            try:
                d = normalize(m.group(1))
            except SelectionError:
                raise SelectionError(f"--data.{field}: {s!r} names no dataset — write "
                                     f"{' or '.join(f'{d}:ID' for d in names())}") from None
            if d not in datasets:
                raise SelectionError(f"--data.{field}: {s!r} names {d}, which is not in data.dataset {datasets}")
            named[d].add(int(m.group(2)))
        elif re.fullmatch(r"\d+", s):
            bare.add(int(s))
        else:
            raise SelectionError(f"--data.{field}: {r!r} is not a subject — use a release id (3) or "
                                 f"dataset:id ({names()[-1]}:3)")
    return named, bare


def resolve_subjects(refs: tuple[dict[str, set[int]], set[int]], present: dict[str, set[int]], field: str) -> set[int]:
    """Global ids of the referenced subjects, given the release ids ``present`` per dataset.

    A bare id must be in exactly one dataset (in two it collides: ask for the prefix); any id in none is an error.
    """
    named, bare = refs
    out: set[int] = set()
    for d, ids in named.items():
        missing = sorted(ids - present.get(d, set()))
        if missing:
            raise SelectionError(f"--data.{field}: {d} has no subject(s) {missing} (present: "
                                 f"{sorted(present.get(d, set()))}) — use ids from its subsNN lists")
        out |= {subject_id(d, i) for i in ids}
    for i in sorted(bare):
        where = [d for d, ids in present.items() if i in ids]
        if len(where) > 1:
            raise SelectionError(f"--data.{field}: subject {i} is in both {' and '.join(where)} (two different "
                                 f"people) — write {' or '.join(repr(f'{d}:{i}') for d in where)}")
        if not where:
            glob = [d for d, ids in present.items() for j in ids
                    if subject_id(d, j) == i and i >= SUBJECTS_PER_DATASET]
            if glob:  # a global id as batches carry it (NMED-H: release id + 1000)
                out.add(i)
                continue
            have = {d: sorted(ids) for d, ids in present.items()}
            raise SelectionError(f"--data.{field}: subject {i} is in no selected dataset (present: {have}) — "
                                 f"use ids from the release's subsNN lists")
        out.add(subject_id(where[0], i))
    return out


def songs_by_dataset(songs: Iterable[int] | None, datasets: list[str]) -> dict[str, list[int] | None]:
    """Global song ids per selected dataset (``None`` = all its songs); each dataset must keep at least one."""
    if songs is None:
        return {d: None for d in datasets}
    songs = sorted({int(s) for s in songs})
    valid = {d: [s.index for s in SONGS if s.dataset == d] for d in datasets}
    stray = [s for s in songs if not any(s in v for v in valid.values())]
    if stray:
        raise SelectionError(f"--data.songs: {stray} are not songs of {datasets} — use global song ids "
                             f"{', '.join(f'{d}: {v[0]}-{v[-1]}' for d, v in valid.items())}")
    out = {d: [s for s in songs if s in valid[d]] for d in datasets}
    empty = [d for d, v in out.items() if not v]
    if empty:
        raise SelectionError(f"--data.songs: selects no song of {', '.join(empty)} — add one of "
                             f"{[s for d in empty for s in valid[d]]} or drop {', '.join(empty)} from data.dataset")
    return out

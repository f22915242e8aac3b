"""Which data a run reads: the datasets (one or both NMED releases), a root and an audio folder per dataset,
subjects (namespaced by dataset), NMED-H hearings. One place for these rules, shared by the data module
(cache key, split, control) and ``prepare`` (reading).

**Pooling.** ``dataset`` is ``"nmed-t"``, ``"nmed-h"`` or a list of both (the paper's pool: 20 + 48 = 68
subjects, 10 + 4 = 14 songs). Songs are global ids (:data:`datamodules.songs.SONGS` rows) already; subjects are
made global here: :func:`subject_id` adds a per-dataset offset (NMED-T ids as in the release, NMED-H ids +1000),
so participant 3 of NMED-T and participant 3 of NMED-H are two people in every split, batch and metric.

**Roots.** One dataset: ``root`` is its release folder. Several: a mapping ``{nmed-t: DIR, nmed-h: DIR}``, a
list in ``dataset`` order, or one folder holding ``nmed-t/`` and ``nmed-h/`` (the demo's layout). Audio: default
``<root>/stimuli`` per dataset; both releases number their songs from 21, so a pool needs one audio folder per
dataset (a mapping), never one shared folder.

**Subject references** (``subjects``, ``test_subjects``): an int is a release id (``subsNN``); in a pool an int
found in both datasets is ambiguous — write ``"nmed-t:3"`` / ``"nmed-h:3"``. ``test_subjects`` also accepts global
ids as batches carry them (NMED-H ids + 1000), e.g. listed from a prepared cache.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from datamodules.nmed.recording import dataset_name
from datamodules.validate import SettingError

DATASETS = ("nmed-t", "nmed-h")
SUBJECT_OFFSET = {"nmed-t": 0, "nmed-h": 1000}
DATASET_CODE = {"nmed-t": 1, "nmed-h": 2}  # seeds of per-recording draws (split spans, control shifts)
HEARINGS = ("a", "b")
EEG_PATTERNS = {"nmed-t": "song*_Imputed.mat", "nmed-h": "CleanEEG_aggregatedByStimulus_*"}


class SelectionError(SettingError):
    """A data setting (``--data.*``) that cannot be honoured on this data: ``--data.<field>: <what> — <fix>``
    (a :class:`datamodules.validate.SettingError`: one line, exit code 2)."""

    def __init__(self, message: str) -> None:
        ValueError.__init__(self, message)
        self.where, _, rest = message.partition(": ")
        self.what, _, self.fix = rest.partition(" — ")


def normalize(name: Any) -> str:
    """:func:`datamodules.nmed.recording.dataset_name`, or a one-line ``--data.dataset`` error."""
    canonical = dataset_name(name)
    if canonical is not None:
        return canonical
    raise SelectionError(f"--data.dataset: {name!r} is not a dataset — use nmed-t, nmed-h or [nmed-t, nmed-h]")


def parse_datasets(dataset: str | Sequence[str]) -> list[str]:
    """The selected datasets in canonical order (``nmed-t`` before ``nmed-h``), each once."""
    names = [dataset] if isinstance(dataset, str) else list(dataset)
    if not names:
        raise SelectionError("--data.dataset: empty list — use nmed-t, nmed-h or [nmed-t, nmed-h]")
    chosen = {normalize(n) for n in names}
    return [d for d in DATASETS if d in chosen]


def subject_id(dataset: str, subject: int) -> int:
    """Global subject id: the release id plus the dataset's offset (:data:`SUBJECT_OFFSET`)."""
    subject = int(subject)
    if not 0 <= subject < 1000:
        raise SelectionError(f"subject id {subject} of {dataset} is outside 0-999: chanmusic namespaces subjects "
                             f"as dataset offset + id — renumber the participants in subsNN")
    return SUBJECT_OFFSET[dataset] + subject


def subject_name(sid: int) -> str:
    """``"nmed-h:3"`` for global id 1003."""
    ds = max((d for d in DATASETS if SUBJECT_OFFSET[d] <= sid), key=lambda d: SUBJECT_OFFSET[d])
    return f"{ds}:{sid - SUBJECT_OFFSET[ds]}"


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
                                 f"give one per dataset, in that order, or a mapping {{nmed-t: DIR, nmed-h: DIR}}")
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
                    f"--data.root '{{nmed-t: DIR, nmed-h: DIR}}' (or put the releases in {base}/nmed-t and {base}/nmed-h)")
    audio = _per_dataset(audio_root, datasets, "audio_root") if audio_root else None
    if audio_root and audio is None:
        if len(datasets) > 1:
            raise SelectionError(
                "--data.audio_root: one audio folder for both datasets, but NMED-T and NMED-H both number their songs "
                "from 21 (song21.wav is a different song in each) — give one per dataset: "
                "--data.audio_root '{nmed-t: DIR, nmed-h: DIR}', or leave it out (default <root>/stimuli)")
        audio = {datasets[0]: audio_root}
    out = []
    for d in datasets:
        r = Path(str(roots[d])).expanduser()
        a = Path(str(audio[d])).expanduser() if audio else r / "stimuli"
        out.append(DatasetSource(d, r, a))
    return out


def input_files(src: DatasetSource) -> list[Path]:
    """The release files (and song audio) of one dataset; errors name ``data.root`` and the fix."""
    if not src.root.is_dir():
        raise SelectionError(f"--data.root: {src.root} is not a folder — point --data.root at the "
                                f"{src.dataset.upper()} release folder (or run `make demo` for demo data)")
    eeg = sorted(src.root.glob(EEG_PATTERNS[src.dataset]))
    if not eeg:
        raise SelectionError(f"--data.root: no {EEG_PATTERNS[src.dataset]} files in {src.root} for "
                             f"--data.dataset {src.dataset} — is this the right folder / dataset?")
    if src.dataset == "nmed-h":  # extracted archives are folders: fingerprint the .mat files inside
        eeg = [q for p in eeg for q in ([p] if p.is_file() else sorted(p.rglob("*.mat")))]
    from datamodules.nmed import AUDIO_EXTENSIONS

    audio = sorted(p for p in src.audio_root.glob("song*") if p.suffix.lower() in AUDIO_EXTENSIONS) \
        if src.audio_root.is_dir() else []
    return eeg + audio


def check_hearings(hearings: Sequence[str] | None, datasets: list[str], split: str) -> list[str]:
    """The NMED-H hearings to read (``a`` first, ``b`` second hearing); NMED-T has one (``a``).
    ``None``: ``[a]`` (the authors' choice), or ``[a, b]`` for the hearing split, which needs both."""
    if split == "hearing" and "nmed-h" not in datasets:
        raise SelectionError("--data.split: hearing tests on second hearings, which only NMED-H has — add nmed-h to "
                             "data.dataset or choose another data.split")
    if hearings is None:
        hearings = list(HEARINGS) if split == "hearing" else ["a"]
    hearings = [hearings] if isinstance(hearings, str) else list(hearings)
    bad = [h for h in hearings if h not in HEARINGS]
    if bad or not hearings:
        raise SelectionError(f"--data.hearings: {bad or '[]'} — use [a] (first hearing, the default), [b] or [a, b]")
    if "nmed-h" not in datasets and hearings != ["a"]:
        raise SelectionError(f"--data.hearings: {hearings} but NMED-T has one hearing — leave data.hearings at [a]")
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
        m = re.fullmatch(r"([A-Za-z_-]+)\s*:\s*(\d+)", s)
        if m:
            try:
                d = normalize(m.group(1))
            except SelectionError:
                raise SelectionError(f"--data.{field}: {s!r} names no dataset — write nmed-t:ID or nmed-h:ID") from None
            if d not in datasets:
                raise SelectionError(f"--data.{field}: {s!r} names {d}, which is not in data.dataset {datasets}")
            named[d].add(int(m.group(2)))
        elif re.fullmatch(r"\d+", s):
            bare.add(int(s))
        else:
            raise SelectionError(f"--data.{field}: {r!r} is not a subject — use a release id (3) or "
                                 f"dataset:id (nmed-h:3)")
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
            glob = [d for d, ids in present.items() for j in ids if subject_id(d, j) == i and i >= 1000]
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
    from datamodules.songs import SONGS

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

"""Cross-subject folds of a comparison (``folds: subjects k=5`` in the spec): which subjects each fold holds out.

Every run is repeated once per fold with ``data.split: subjects`` and ``data.test_subjects`` set to the fold's
subjects (validation is carved from the other subjects' windows; see ``experiments/data/cross_subject.yaml``).
The subjects are read from the prepared cache of the data the runs use (its ``recordings.json``), sorted, and
dealt out round-robin: fold ``i`` holds out ``ids[i::k]``. The assignment is written to ``OUT/folds.json``.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from chanmusic.core.errors import InputError
from chanmusic.runner.cache_pass import data_settings
from chanmusic.runner.plan import Step


def subject_ids(step: Step, extra_args: list[str]) -> list[Any]:
    """The subject ids in the prepared cache that ``step`` reads (its ``data:`` settings as the CLI sees them)."""
    from datamodules.datamodule import NMEDDataModule

    data = data_settings(step.configs, (step.set or {}).get("data") or {}, extra_args)
    accepted = set(inspect.signature(NMEDDataModule.__init__).parameters) - {"self"}
    dm = NMEDDataModule(**{k: v for k, v in data.items() if k in accepted})
    path = dm.cache_path() / "recordings.json"
    if not path.is_file():
        raise InputError("folds", f"no prepared cache at {path.parent} to read the subjects from (see "
                         "OUT/prepare/*/log.txt)", "fix the data settings or run `chanmusic prepare` with them")
    return sorted({r["subject"] for r in json.loads(path.read_text())}, key=lambda s: (str(type(s)), s))


def assign(subjects: list[Any], k: int) -> list[list[Any]]:
    """Deal sorted ``subjects`` into ``k`` folds round-robin (fold ``i`` = ``subjects[i::k]``)."""
    if len(subjects) < 2 or k > len(subjects):
        raise InputError("folds", f"k={k} folds by subjects need at least max(k, 2) subjects, the data has "
                         f"{len(subjects)}", f"use 2 <= k <= {len(subjects)}")
    return [list(subjects[i::k]) for i in range(k)]


def record(out: Path, folds: dict, assigned: list[list[Any]]) -> None:
    """``OUT/folds.json``: the fold setting and the subjects each fold holds out."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "folds.json").write_text(json.dumps({**folds, "test_subjects": assigned}, indent=2, default=str))

"""Where a comparison's runs live inside its output folder ``OUT`` (``chanmusic compare`` writes there, the report
and the interpretation read there)::

    OUT/runs/<row>/[fold<f>/]seed<k>/music|control/     one run: status.json + one folder per step
        .../<step>/                                     the step's Lightning log dir (config.yaml, metrics.json, ...)
    OUT/runs/_pretrain/<configs>/[fold<f>/]seed<k>/     a pretraining shared by the rows that name the same configs
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

RUNS = "runs"
PRETRAIN = "_pretrain"


def run_folder(out: str | Path, row: str, seed: int, control: bool, fold: int | None = None) -> Path:
    """One run's folder: ``OUT/runs/<row>/[fold<f>/]seed<k>/music`` or ``.../control``."""
    d = Path(out) / RUNS / row
    if fold is not None:
        d = d / f"fold{fold}"
    return d / f"seed{seed}" / ("control" if control else "music")


def step_folder(run_dir: str | Path, step: str) -> Path:
    """A step's folder in a run (``align``, ``reconstruct``, ...): its Lightning log dir."""
    return Path(run_dir) / step


def pretrain_key(configs: list[str]) -> str:
    """The folder name of a pretraining: its YAML list, joined with ``+``, unsafe characters as ``_``."""
    return "+".join(re.sub(r"[^A-Za-z0-9_.-]", "_", Path(c).with_suffix("").as_posix().replace("/", "-"))
                    for c in configs)


def pretrain_folder(out: str | Path, configs: list[str], seed: int, fold: int | None = None) -> Path:
    """``OUT/runs/_pretrain/<configs>/[fold<f>/]seed<k>``: shared by the rows (music and control) using it."""
    return (Path(out) / RUNS / PRETRAIN / pretrain_key(configs) / (f"fold{fold}" if fold is not None else "")
            / f"seed{seed}")


def units(spec: dict) -> list[tuple[Any, int | None, int]]:
    """(key, fold, seed) of every replicate of a row of ``OUT/spec.json``: its seeds, or folds × seeds when the spec
    has folds."""
    folds = spec.get("folds")
    if not folds:
        return [(s, None, s) for s in spec["seeds"]]
    return [(f"fold{f}-seed{s}", f, s) for f in range(int(folds["k"])) for s in spec["seeds"]]

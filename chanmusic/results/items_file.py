"""``items.csv``: one row per test item, beside ``metrics.json`` — what every interval of a verdict is computed from.

Columns: ``segment`` (the EEG window's id), ``recording`` (index into the cache's recordings: the intervals'
clusters), ``subject``, ``song`` and ``stimulus`` (the data module's codes), ``dataset``, ``start`` / ``length``
(the window's music span from the stimulus onset, in EEG samples as the cache's music table stores them), then per identification metric ``<metric>_hit`` (hit
rate of the item over the repeated distractor draws; empty where the item had no distractor) and ``<metric>_rank``
(mean rank of the true candidate, 1 = top). ``pandas.read_csv(path)`` reads it in one line (:func:`read_items`).

The music and control runs of one seed score the same windows (same ``split_seed``), so their files pair by
``segment`` (:func:`paired_items`).
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from chanmusic.core.files import atomic_write_text

ITEMS_FILE = "items.csv"
FACTS = ("segment", "recording", "subject", "song", "dataset", "stimulus", "start", "length")


def write_items(path: str | Path, facts: Mapping[str, Sequence[Any]],
                metrics: Mapping[str, Mapping[str, np.ndarray]]) -> Path:
    """Write ``items.csv`` (atomically): ``facts`` (the :data:`FACTS` columns, one value per item, rows keyed by
    ``segment``) joined with each metric's per-item ``{"segment", "hit", "rank"}`` on ``segment``."""
    seg = [int(s) for s in facts["segment"]]
    if len(set(seg)) != len(seg):
        raise ValueError(f"{path}: duplicate segments in the per-item facts")
    pos = {s: i for i, s in enumerate(seg)}
    cols: dict[str, list] = {k: list(facts.get(k, [""] * len(seg))) for k in FACTS}
    for name, items in metrics.items():
        hit, rank = [math.nan] * len(seg), [math.nan] * len(seg)
        for s, h, r in zip(items["segment"], items["hit"], items["rank"]):
            if int(s) not in pos:
                raise ValueError(f"{path}: {name} scored segment {int(s)}, absent from the item facts")
            hit[pos[int(s)]], rank[pos[int(s)]] = float(h), float(r)
        cols[f"{name}_hit"], cols[f"{name}_rank"] = hit, rank
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(cols))
    for i in range(len(seg)):
        w.writerow(["" if isinstance(v[i], float) and math.isnan(v[i]) else _plain(v[i]) for v in cols.values()])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buf.getvalue())
    return path


def _plain(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return v


def read_items(path: str | Path):
    """The per-item table (a pandas ``DataFrame``); ``FileNotFoundError`` when the run wrote none."""
    import pandas as pd

    return pd.read_csv(path)


def items_metrics(df) -> list[str]:
    """The metrics a per-item table has hits for."""
    return [c[:-4] for c in df.columns if c.endswith("_hit")]


def paired_items(music, control, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(music hits, control hits, recordings)`` of the items both tables scored on ``metric``, paired by
    ``segment``; ``ValueError`` when the two tables share no item (different test sets cannot be paired)."""
    col = f"{metric}_hit"
    a = music[["segment", "recording", col]].dropna()
    b = control[["segment", col]].dropna()
    j = a.merge(b, on="segment", suffixes=("_m", "_c"))
    if len(j) == 0:
        raise ValueError(f"{metric}: the music and control runs share no scored test item")
    return j[f"{col}_m"].to_numpy(float), j[f"{col}_c"].to_numpy(float), j["recording"].to_numpy()

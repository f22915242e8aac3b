"""``metrics.json``: the file a run's ``test`` writes its metrics to; its schema, one reader and one writer.

Schema version :data:`SCHEMA_VERSION`::

    {"schema_version": 1,
     "<metric>": {"mean": float, "n": int, "n_way": int | null, "chance": float | null, "ci95": [lo, hi],
                  "ci95_over": "recordings" | "windows", "ci95_windows": [lo, hi], ...} | null,
     "checkpoint": {"step": int, "rule": str, "path": str},   (the runner's runs: the checkpoint rule)
     "unavailable": {"<metric>": "why it is null"},
     "provenance": {...}}

A metric's entry is :func:`metric_entry` of its ``compute()``; an identification's ``ci95`` resamples recordings
(``ci95_over``), its window-level interval is ``ci95_windows`` (comparison only); one that cannot be formed on the data is ``null``
with its reason under ``"unavailable"``. Later writers (the reconstruction step, ``chanmusic robustness``) merge
into the file (:func:`merge_metrics`); every write is atomic. A file without ``schema_version`` predates the field
(same layout); a file from a newer schema is refused rather than misread.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping

from chanmusic.core.errors import FormattedError
from chanmusic.core.files import atomic_write_text

log = logging.getLogger("chanmusic")

SCHEMA_VERSION = 1  #: the only change to the contents of metrics.json over its unversioned predecessor is this field
METRICS_FILE = "metrics.json"


class SchemaError(FormattedError):
    """A ``metrics.json`` this package cannot read (written by a newer version)."""


def read_json(path: str | Path) -> Any:
    """The parsed JSON file, or ``None`` when it is missing or not (yet) valid JSON (a half-written file)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_metrics(path: str | Path) -> dict[str, Any]:
    """The contents of a ``metrics.json`` (``{}`` when there is none); raises :class:`SchemaError` for a newer schema
    and ``json.JSONDecodeError`` for a damaged file (a merge must not silently drop earlier metrics)."""
    path = Path(path)
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    version = data.get("schema_version", 0) if isinstance(data, dict) else None
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise SchemaError(f"{path}: metrics.json of schema version {version!r}, this chanmusic reads "
                          f"up to {SCHEMA_VERSION} — use the chanmusic version that wrote it")
    return data


def metric_entries(data: Mapping[str, Any] | None) -> dict[str, dict]:
    """The entries of a ``metrics.json`` that hold a number (``null`` ones, ``provenance`` and the version left out)."""
    return {k: v for k, v in (data or {}).items() if isinstance(v, dict) and "mean" in v}


def merge_metrics(path: str | Path, results: Mapping[str, dict[str, Any] | None],
                  reasons: Mapping[str, str] | None = None, provenance: dict[str, Any] | None = None) -> Path:
    """Merge ``results`` into the ``metrics.json`` at ``path`` (created with its folder when missing) and write it
    atomically. A ``None`` result is written as ``null`` with its reason from ``reasons`` under ``"unavailable"``
    (reasons of metrics that now have a value are dropped); ``provenance``, when given, replaces the recorded one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    data.update(read_metrics(path))
    data["schema_version"] = SCHEMA_VERSION
    data.update(results)
    unavailable = {k: v for k, v in (data.get("unavailable") or {}).items() if data.get(k) is None}
    unavailable.update(reasons or {})
    if unavailable:
        data["unavailable"] = unavailable
    if provenance is not None:
        data["provenance"] = provenance
    atomic_write_text(path, json.dumps(data, indent=2))
    log.info("wrote %s", path)
    return path


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x.item() if hasattr(x, "item") else x)
    return None if math.isnan(x) or math.isinf(x) else x


def metric_entry(r: Mapping[str, Any]) -> dict[str, Any]:
    """A metric's ``compute()`` result (tensors or numbers; the interval as ``ci95_low`` / ``ci95_high``) as its
    ``metrics.json`` entry."""
    out: dict[str, Any] = {"mean": _num(r["mean"]), "n": int(_num(r["n"]) or 0),
                           "n_way": int(r["n_way"]) if _num(r.get("n_way")) is not None else None,
                           "chance": _num(r.get("chance")),
                           "ci95": [_num(r.get("ci95_low")), _num(r.get("ci95_high"))]}
    if "ci95_over" in r:  # identification: ci95 resamples recordings (or windows when recordings are unknown)
        out["ci95_over"] = "recordings" if _num(r["ci95_over"]) else "windows"
        out["ci95_windows"] = [_num(r.get("ci95_windows_low")), _num(r.get("ci95_windows_high"))]
    if "draw_std" in r:  # identification: the spread of repeated distractor draws, not an uncertainty
        out["draw_std"] = _num(r["draw_std"])
        out["repeats"] = int(_num(r.get("repeats")) or 0)
    elif "std" in r:  # per-item metrics: the spread of the items' values
        out["std"] = _num(r["std"])
    if _num(r.get("chance_dataset")) is not None:  # song / genre identification: a dataset-aware guesser's score
        out["chance_dataset"] = _num(r["chance_dataset"])
    for k in ("n_way_min", "n_excluded"):
        if _num(r.get(k)):
            out[k] = int(_num(r[k]))
    return out

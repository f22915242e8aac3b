"""Uncertainty of a test-set metric: a seeded bootstrap 95% interval over test items, and the one JSON form of a
metric's result in ``metrics.json`` (DESIGN.md): ``{"mean", "n", "n_way", "chance", "ci95": [lo, hi], ...}``.

The interval resamples test *items* (EEG windows) with replacement, so it says how much the number would move
with another draw of test windows of the same kind. Windows of one recording are correlated, so it is a lower
bound on that uncertainty; the spread over training seeds (``chanmusic compare``) is the other part. The
spread of repeated distractor draws is reported apart, as ``draw_std``: it shrinks with more repeats and says
nothing about the estimate.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

BOOTSTRAP = 1000  #: resamples of the test items


def bootstrap_ci(values: np.ndarray, seed: int = 0, n_boot: int = BOOTSTRAP, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` ``[n]`` (seeded; chunked to bound memory)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng([int(seed), 95])
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // v.size)
    for b in range(0, n_boot, chunk):
        k = min(chunk, n_boot - b)
        means[b:b + k] = v[rng.integers(0, v.size, size=(k, v.size))].mean(1)
    a = (1 - level) / 2
    lo, hi = np.quantile(means, [a, 1 - a])
    return float(lo), float(hi)


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x.item() if hasattr(x, "item") else x)
    return None if math.isnan(x) or math.isinf(x) else x


def metric_entry(r: Mapping[str, Any]) -> dict[str, Any]:
    """A metric's ``compute()`` result (tensors or numbers) as its ``metrics.json`` entry."""
    out: dict[str, Any] = {"mean": _num(r["mean"]), "n": int(_num(r["n"]) or 0),
                           "n_way": int(r["n_way"]) if _num(r.get("n_way")) is not None else None,
                           "chance": _num(r.get("chance")),
                           "ci95": [_num(r.get("ci_low")), _num(r.get("ci_high"))]}
    if "draw_std" in r:  # identification: the spread of repeated distractor draws, not an uncertainty
        out["draw_std"] = _num(r["draw_std"])
        out["repeats"] = int(_num(r.get("repeats")) or 0)
    elif "std" in r:  # per-item metrics: the spread of the items' values
        out["std"] = _num(r["std"])
    for k in ("n_way_min", "n_excluded"):
        if _num(r.get(k)):
            out[k] = int(_num(r[k]))
    return out

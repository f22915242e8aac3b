"""Statistics of the comparison table: 95% t-intervals over seeds, within one run, and of the gain over the control.

- :func:`seed_summary`: mean, std (ddof=1) and t-CI over per-seed values (k ≥ 2).
- :func:`within_run_summary`: one seed, the run's own spread over its ``r`` repeats (or items).
- :func:`gain_summary`: music minus no-music control from ``metrics.json`` means (metrics without per-item files).
- :func:`item_gain`: the gain from the per-item files (``items.csv``), paired item by item: one seed, a paired
  bootstrap over recordings; several, over seeds (folds: seeds averaged within a fold first).
- :func:`verdict`: "beats its no-music control" on the declared primary metric; secondaries Holm-corrected.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


def t_quantile(df: int, q: float = 0.975) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(q, df))


def seed_summary(values: Sequence[float]) -> dict[str, Any]:
    """Mean, std (ddof=1) and 95% t-CI over per-seed values (k ≥ 2)."""
    v = np.asarray(values, dtype=np.float64)
    k = len(v)
    if k < 2:
        raise ValueError("seed_summary needs at least 2 seeds")
    mean, std = float(v.mean()), float(v.std(ddof=1))
    half = t_quantile(k - 1) * std / math.sqrt(k)
    return {"mean": mean, "std": std, "ci95": (mean - half, mean + half), "k": k, "ci95_kind": "seeds"}


def within_run_summary(mean: float, std0: float, r: int) -> dict[str, Any]:
    """One seed: the run's own spread. ``std0`` is the population std (ddof=0, as metrics.json stores it)
    over ``r`` repeats (or items); the CI is mean ± t(r−1)·s/√r with s the ddof=1 std."""
    if r < 2:
        return {"mean": mean, "std": std0, "ci95": None, "k": 1, "ci95_kind": "none"}
    s = std0 * math.sqrt(r / (r - 1))
    half = t_quantile(r - 1) * s / math.sqrt(r)
    return {"mean": mean, "std": std0, "ci95": (mean - half, mean + half), "k": 1,
            "ci95_kind": f"within-run (r={r})", "se": s / math.sqrt(r), "r": r}


def gain_summary(music: dict[int, dict], control: dict[int, dict], r_of: dict[int, int]) -> dict[str, Any] | None:
    """Gain of music over control. Paired by seed (t-CI over the per-seed differences) with ≥ 2 common seeds;
    with one, the two runs' bootstrap intervals over test items (``ci95``) combined as independent normal
    errors (older files without ``ci95``: the within-run standard errors, df = r − 1)."""
    common = sorted(set(music) & set(control))
    if not common:
        return None
    d = [music[s]["mean"] - control[s]["mean"] for s in common]
    if len(common) >= 2:
        out = seed_summary(d)
        return {"gain": out["mean"], "ci95": out["ci95"], "ci95_kind": "seeds (paired)", "k": len(common)}
    s = common[0]
    ci95s = [m[s].get("ci95") for m in (music, control)]
    if all(isinstance(ci95, (list, tuple)) and None not in ci95[:2] for ci95 in ci95s):
        se = math.sqrt(sum(((ci95[1] - ci95[0]) / (2 * 1.959964)) ** 2 for ci95 in ci95s))
        return {"gain": d[0], "ci95": (d[0] - 1.959964 * se, d[0] + 1.959964 * se),
                "ci95_kind": "test items (bootstrap)", "k": 1}
    r = r_of.get(s, 0)
    stds = [m[s].get("std") for m in (music, control)]
    if r < 2 or None in stds:  # e.g. embedding_spread: a single number per run, no spread to combine
        return {"gain": d[0], "ci95": None, "ci95_kind": "none", "k": 1}
    se = math.sqrt(sum((sd * math.sqrt(r / (r - 1))) ** 2 / r for sd in stds))
    half = t_quantile(r - 1) * se
    return {"gain": d[0], "ci95": (d[0] - half, d[0] + half), "ci95_kind": f"within-run (r={r})", "k": 1}


# ------------------------------------------------------------------------------------------------ the verdict
ALPHA = 0.025  #: one-sided level of "beats its no-music control" (the 95% interval's lower end above 0)


def item_gain(units: Sequence[tuple[Any, np.ndarray, np.ndarray, np.ndarray]], seed: int = 0) -> dict[str, Any]:
    """Gain of music over control from per-item files: ``units`` = ``(fold or None, music hits, control hits,
    recordings)`` per replicate (items already paired). One replicate: the paired bootstrap over recordings
    (:func:`chanmusic.evaluation.intervals.paired_cluster_bootstrap`). Several: each replicate's paired gain
    (its own test windows), averaged over the seeds of a fold, then a t-interval over the folds (over the seeds
    without folds); ``p`` is one-sided (gain ≤ 0)."""
    from scipy.stats import t as student

    from chanmusic.evaluation.intervals import paired_cluster_bootstrap

    if len(units) == 1:
        _, m, c, rec = units[0]
        iv = paired_cluster_bootstrap(m, c, rec, seed)
        return {"gain": iv.estimate, "ci95": (iv.low, iv.high), "p": iv.p_le_zero, "k": 1,
                "ci95_kind": f"recordings (paired bootstrap, {iv.clusters} recordings)"}
    groups: dict[Any, list[float]] = {}
    for i, (fold, m, c, _) in enumerate(units):
        groups.setdefault(fold if fold is not None else ("seed", i), []).append(float(np.mean(m - c)))
    g = np.array([np.mean(v) for v in groups.values()])
    k = len(g)
    kind = "folds (seeds averaged within a fold; paired)" if any(f is not None for f, *_ in units) \
        else "seeds (paired; each its own test split)"
    if k < 2:
        return {"gain": float(g.mean()), "ci95": None, "p": None, "k": k, "ci95_kind": "none"}
    mean, se = float(g.mean()), float(g.std(ddof=1) / math.sqrt(k))
    half = t_quantile(k - 1) * se
    p = float(student.sf(mean / se, k - 1)) if se > 0 else (0.0 if mean > 0 else 1.0)
    return {"gain": mean, "ci95": (mean - half, mean + half), "p": p, "k": k, "ci95_kind": kind}


def verdict(gains: dict[str, dict[str, Any]], primary: str) -> dict[str, Any]:
    """The row's verdict: ``beats`` (the primary metric's gain interval above 0; ``None`` when it has no
    interval), and each secondary metric's Holm-adjusted one-sided p-value (over the secondaries) and whether it
    beats at :data:`ALPHA`."""
    from chanmusic.evaluation.intervals import holm

    p = gains.get(primary)
    beats = None if p is None or p.get("ci95") is None else bool(p["ci95"][0] > 0)
    sec = [m for m in gains if m != primary and gains[m].get("p") is not None]
    adj = holm([gains[m]["p"] for m in sec]) if sec else []
    return {"primary": primary, "beats": beats,
            "secondary": {m: {"p_holm": a, "beats": a < ALPHA} for m, a in zip(sec, adj)}}

"""Statistics of the comparison table: 95% t-intervals over seeds, within one run, and of the gain over the control.

- :func:`seed_summary`: mean, std (ddof=1) and t-CI over per-seed values (k ≥ 2).
- :func:`within_run_summary`: one seed, the run's own spread over its ``r`` repeats (or items).
- :func:`gain_summary`: music minus no-music control, paired by seed (one seed: within-run standard errors).
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

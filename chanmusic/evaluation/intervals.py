"""Uncertainty of a test-set metric and of a gain over the no-music control, resampling what varies.

The windows of one recording share subject, song, drift and the recording's fingerprint, so they are not
independent draws: every interval that decides something resamples **recordings** (clusters).

- :func:`cluster_bootstrap`: the 95% interval of a mean over items, resampling recordings with replacement; the
  statistic is a ratio of sums (hits of the resampled recordings / their items), so recordings of different
  lengths weigh as in the plain mean. ``ci95`` in ``metrics.json``.
- :func:`paired_cluster_bootstrap`: the gain of music over control on the **same** test items, resampling
  recordings with both arms' sums together (a paired difference); also its one-sided p-value (the share of
  resampled gains at or below 0), which the report corrects for multiplicity (:func:`holm`).
- :func:`bootstrap_ci95`: the window-level interval (items resampled as if independent), kept as
  ``ci95_windows`` in ``metrics.json`` for comparison only: it is too narrow when recordings vary.

All use :func:`scipy.stats.bootstrap` (percentile method, seeded).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

BOOTSTRAP = 1000  #: resamples of the window-level interval
CLUSTER_BOOTSTRAP = 4000  #: resamples of the recording-level intervals
LEVEL = 0.95  #: the interval's coverage (two-sided; a gain "beats" when its lower end is above 0: 2.5% one-sided)


@dataclass(frozen=True)
class Interval:
    """A point estimate, its 95% interval, the one-sided p-value of ``estimate <= 0`` (gains only) and the number
    of clusters resampled."""

    estimate: float
    low: float
    high: float
    p_le_zero: float | None
    clusters: int


def _cluster_sums(values: np.ndarray, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(cluster ids, per-cluster sums of values, per-cluster item counts)``; NaN items left out."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    c = np.asarray(clusters).reshape(-1)
    if len(v) != len(c):
        raise ValueError(f"{len(v)} values but {len(c)} cluster labels")
    keep = ~np.isnan(v)
    ids, inv = np.unique(c[keep], return_inverse=True)
    return ids, np.bincount(inv, v[keep], len(ids)), np.bincount(inv, None, len(ids)).astype(np.float64)


def _ratio(sums: np.ndarray, counts: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.sum(sums, axis=axis) / np.sum(counts, axis=axis)


def _diff_ratio(music: np.ndarray, control: np.ndarray, counts: np.ndarray, axis: int = -1) -> np.ndarray:
    return (np.sum(music, axis=axis) - np.sum(control, axis=axis)) / np.sum(counts, axis=axis)


def cluster_bootstrap(values: np.ndarray, clusters: np.ndarray, seed: int = 0,
                      n_boot: int = CLUSTER_BOOTSTRAP) -> Interval:
    """95% interval of the mean of per-item ``values`` (NaN = not scored), resampling the ``clusters``
    (recordings) with replacement; the statistic is sum of values / number of items of the resampled clusters."""
    from scipy.stats import bootstrap

    _, sums, counts = _cluster_sums(values, clusters)
    if len(sums) == 0:
        return Interval(float("nan"), float("nan"), float("nan"), None, 0)
    est = float(_ratio(sums, counts))
    if len(sums) < 2:
        return Interval(est, est, est, None, len(sums))
    res = bootstrap((sums, counts), _ratio, n_resamples=n_boot, paired=True, vectorized=True,
                    confidence_level=LEVEL, method="percentile", rng=np.random.default_rng([int(seed), 95]))
    return Interval(est, float(res.confidence_interval.low), float(res.confidence_interval.high), None, len(sums))


def paired_cluster_bootstrap(music: np.ndarray, control: np.ndarray, clusters: np.ndarray, seed: int = 0,
                             n_boot: int = CLUSTER_BOOTSTRAP) -> Interval:
    """Gain of music over control on the same items: per-item ``music`` and ``control`` values (aligned; items
    where either is NaN left out), per-recording sums of both resampled together. The estimate is the mean over
    items of (music − control); ``p_le_zero`` = (1 + resampled gains ≤ 0) / (1 + resamples)."""
    from scipy.stats import bootstrap

    m = np.asarray(music, dtype=np.float64).reshape(-1)
    c = np.asarray(control, dtype=np.float64).reshape(-1)
    if len(m) != len(c):
        raise ValueError(f"music has {len(m)} items, control {len(c)}: pair them by item first")
    both = ~(np.isnan(m) | np.isnan(c))
    ids, ms, counts = _cluster_sums(m[both], np.asarray(clusters).reshape(-1)[both])
    _, cs, _ = _cluster_sums(c[both], np.asarray(clusters).reshape(-1)[both])
    if len(ids) == 0:
        return Interval(float("nan"), float("nan"), float("nan"), None, 0)
    est = float(_diff_ratio(ms, cs, counts))
    if len(ids) < 2:
        return Interval(est, est, est, None, len(ids))
    res = bootstrap((ms, cs, counts), _diff_ratio, n_resamples=n_boot, paired=True, vectorized=True,
                    confidence_level=LEVEL, method="percentile", rng=np.random.default_rng([int(seed), 96]))
    dist = np.asarray(res.bootstrap_distribution)
    p = float((1 + np.sum(dist <= 0)) / (1 + dist.size))
    return Interval(est, float(res.confidence_interval.low), float(res.confidence_interval.high), p, len(ids))


def bootstrap_ci95(values: np.ndarray, seed: int = 0, n_boot: int = BOOTSTRAP) -> tuple[float, float]:
    """Window-level percentile bootstrap 95% interval of the mean of ``values`` ``[n]`` (items as independent)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1 or np.all(v == v[0]):
        return float(v[0]), float(v[0])
    from scipy.stats import bootstrap

    res = bootstrap((v,), np.mean, n_resamples=n_boot, vectorized=True, confidence_level=LEVEL,
                    method="percentile", rng=np.random.default_rng([int(seed), 95]))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj.tolist()

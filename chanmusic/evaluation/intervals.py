"""Uncertainty of a test-set metric: a seeded bootstrap 95% interval over test items (``ci95`` in ``metrics.json``).

The interval resamples test *items* (EEG windows) with replacement, so it says how much the number would move
with another draw of test windows of the same kind. Windows of one recording are correlated, so it is a lower
bound on that uncertainty; the spread over training seeds (``chanmusic compare``) is the other part. The
spread of repeated distractor draws is reported apart, as ``draw_std``: it shrinks with more repeats and says
nothing about the estimate.
"""
from __future__ import annotations

import numpy as np

BOOTSTRAP = 1000  #: resamples of the test items
LEVEL = 0.95  #: the interval's coverage


def bootstrap_ci95(values: np.ndarray, seed: int = 0, n_boot: int = BOOTSTRAP) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean of ``values`` ``[n]`` (seeded; chunked to bound memory)."""
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
    a = (1 - LEVEL) / 2
    lo, hi = np.quantile(means, [a, 1 - a])
    return float(lo), float(hi)

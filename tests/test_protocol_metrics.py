"""Uncertainty and counts in the metrics: n_way as used, null with a reason, a seeded bootstrap interval over test
items (checked against scipy's bootstrap), the distractor-draw spread under its own name; and InfoNCE that does not
push apart two windows of the same music."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from chanmusic.evaluation.intervals import bootstrap_ci95
from chanmusic.results.metrics_file import metric_entry
from chanmusic.evaluation.metrics import Identification, MetricUnavailable
from chanmusic.modules.losses import clip_loss


def _data(n_songs=4, per_song=30, dim=32, noise=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = n_songs * per_song
    targets = torch.randn(n, dim, generator=g)
    preds = targets + noise * torch.randn(n, dim, generator=g)
    song = torch.arange(n) // per_song
    start = (torch.arange(n) % per_song) * 250
    return preds, targets, song, start


def _metric(n_way, kind, preds, targets, song, start, genre=None, seed=0, repeats=10):
    m = Identification(n_way, kind, repeats=repeats, seed=seed)
    n = len(preds)
    m.update(preds, targets, torch.arange(n), song, song if genre is None else genre, song, start,
             torch.full((n,), 250), torch.arange(n))
    return m.compute()


def test_n_way_is_the_count_actually_used():
    p, t, song, start = _data(n_songs=4, per_song=10)
    assert int(_metric(None, "song", p, t, song, start)["n_way"]) == 4   # every song present
    assert int(_metric(14, "song", p, t, song, start)["n_way"]) == 4     # asked 14, only 4 songs exist
    assert int(_metric(50, "segment", p, t, song, start)["n_way"]) == 40  # only 40 distinct segments
    assert int(_metric(10, "within_song", p, t, song, start)["n_way"]) == 10
    genre = torch.zeros_like(song)  # NMED-H alone: its four songs share one genre
    with pytest.raises(MetricUnavailable, match="only 1 genre present"):
        _metric(None, "genre", p, t, song, start, genre=genre)


def test_bootstrap_interval_is_seeded_and_agrees_with_scipy():
    from scipy.stats import bootstrap

    rng = np.random.default_rng(3)
    v = (rng.random(400) < 0.3).astype(float)
    a, b = bootstrap_ci95(v, seed=1), bootstrap_ci95(v, seed=1)
    assert a == b  # seeded
    assert bootstrap_ci95(v, seed=2) != a
    ref = bootstrap((v,), np.mean, method="percentile", n_resamples=4000, random_state=0).confidence_interval
    assert a[0] == pytest.approx(ref.low, abs=0.012) and a[1] == pytest.approx(ref.high, abs=0.012)
    # and the normal approximation of a binomial proportion (half-width 1.96 sqrt(p(1-p)/n))
    half = 1.96 * np.sqrt(v.mean() * (1 - v.mean()) / len(v))
    assert (a[1] - a[0]) / 2 == pytest.approx(half, rel=0.15)


def test_identification_interval_is_over_items_not_draws():
    p, t, song, start = _data(n_songs=4, per_song=40, noise=3.0)
    r = _metric(50, "segment", p, t, song, start, repeats=30)
    mean, lo, hi = float(r["mean"]), float(r["ci95_low"]), float(r["ci95_high"])
    assert lo < mean < hi
    # the spread of repeated distractor draws shrinks with repeats and is far narrower than the item interval
    assert float(r["draw_std"]) < (hi - lo) / 4
    again = _metric(50, "segment", p, t, song, start, repeats=30)
    assert float(again["ci95_low"]) == lo and float(again["ci95_high"]) == hi  # seeded
    e = metric_entry(r)
    assert set(e) >= {"mean", "n", "n_way", "chance", "ci95", "draw_std", "repeats"} and "std" not in e
    assert e["ci95"] == [pytest.approx(lo), pytest.approx(hi)] and e["n"] == 160 and e["n_way"] == 50


def test_infonce_does_not_use_same_music_as_a_negative():
    g = torch.Generator().manual_seed(0)
    e, a = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    a[3] = a[1]  # rows 1 and 3: the same music window heard by two subjects
    music = torch.tensor([0, 1, 2, 1, 4, 5])
    scale = torch.tensor(2.0)
    # expected: row/column cross-entropy where, for row 1, column 3 is not among the candidates (and vice versa)
    logits = scale.exp() * F.normalize(e, dim=-1) @ F.normalize(a, dim=-1).T
    keep = ~((music[:, None] == music[None, :]) & ~torch.eye(6, dtype=torch.bool))
    rows = [-(logits[i, i] - torch.logsumexp(logits[i][keep[i]], 0)) for i in range(6)]
    cols = [-(logits[i, i] - torch.logsumexp(logits[:, i][keep[:, i]], 0)) for i in range(6)]
    expected = 0.5 * (torch.stack(rows).mean() + torch.stack(cols).mean())
    got = clip_loss(e, a, scale, music)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert got.item() != pytest.approx(clip_loss(e, a, scale).item(), rel=1e-3)  # the mask matters here
    distinct = torch.arange(6)
    assert clip_loss(e, a, scale, distinct).item() == pytest.approx(clip_loss(e, a, scale).item(), rel=1e-6)

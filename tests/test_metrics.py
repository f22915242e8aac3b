import numpy as np
import pytest
import torch

from chanmusic.evaluation.metrics import Identification


def _make(n_songs=10, per_song=20, dim=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = n_songs * per_song
    targets = torch.randn(n, dim, generator=g)
    song = torch.arange(n) // per_song
    start = (torch.arange(n) % per_song) * 250
    return targets, song, start


def _update(metric, preds, targets, song, start, genre=None):
    n = len(preds)
    metric.update(preds, targets, torch.arange(n), song, song if genre is None else genre, song, start,
                  torch.full((n,), 250))


@pytest.mark.parametrize("kind,n_way", [("segment", 50), ("song", 14), ("genre", 10), ("within_song", 10)])
def test_perfect_predictions_score_one(kind, n_way):
    targets, song, start = _make()
    m = Identification(n_way, kind, repeats=3)
    _update(m, targets.clone(), targets, song, start)
    assert m.compute()["mean"].item() == 1.0


def test_random_predictions_score_chance():
    targets, song, start = _make(n_songs=10, per_song=60)
    preds = torch.randn(targets.shape, generator=torch.Generator().manual_seed(1))
    m = Identification(50, "segment", repeats=10)
    _update(m, preds, targets, song, start)
    out = m.compute()
    assert out["chance"].item() == pytest.approx(1 / 50)
    assert abs(out["mean"].item() - 1 / 50) < 0.015
    assert out["n"].item() == 600


def test_song_mode_chance_is_one_over_songs_present():
    targets, song, start = _make(n_songs=10)
    m = Identification(14, "song", repeats=2)
    _update(m, torch.randn(targets.shape), targets, song, start)
    assert m.compute()["chance"].item() == pytest.approx(0.1)


def test_same_audio_is_never_a_distractor():
    # two subjects heard the same window: same music id -> a single candidate, so a perfect
    # prediction still wins even though another item's target is identical
    targets, song, start = _make(n_songs=2, per_song=30)
    t2 = torch.cat([targets, targets])
    music = torch.cat([torch.arange(60), torch.arange(60)])
    m = Identification(20, "segment", repeats=2)
    s2, st2 = torch.cat([song, song]), torch.cat([start, start])
    m.update(t2.clone(), t2, music, s2, s2, s2, st2, torch.full((120,), 250))
    assert m.compute()["mean"].item() == 1.0


def test_overlapping_windows_are_excluded():
    # windows of one stimulus overlapping in time must not be distractors: make every overlapping
    # neighbour's target equal to the prediction; a correct exclusion keeps the score at 1
    n = 40
    starts = torch.arange(n) * 125  # stride half the 250-sample window: neighbours overlap
    base = torch.randn(n, 16, generator=torch.Generator().manual_seed(0))
    targets = base.clone()
    targets[1::2] = targets[0::2]  # odd windows (overlapping the even ones) share their target
    preds = targets.clone()
    m = Identification(n, "within_song", repeats=3)  # every valid distractor is drawn
    z = torch.zeros(n, dtype=torch.long)
    m.update(preds, targets, torch.arange(n), z, z, z, starts, torch.full((n,), 250))
    out = m.compute()
    # every item's twin target belongs to an overlapping neighbour; excluded -> every item is a hit
    # (without the exclusion the tie would make every item a miss)
    assert out["mean"].item() == 1.0


def test_a_metric_that_cannot_be_formed_says_why():
    # one song present: song identification has no distractor -> MetricUnavailable (the stages write null + reason)
    from chanmusic.evaluation.metrics import MetricUnavailable

    m = Identification(50, "song")
    t = torch.randn(3, 8)
    z = torch.zeros(3, dtype=torch.long)
    m.update(t, t, torch.arange(3), z, z, z, torch.arange(3) * 500, torch.full((3,), 250))
    with pytest.raises(MetricUnavailable, match="only 1 song present"):
        m.compute()


def test_within_song_distractors_never_come_from_another_song():
    # each prediction points (strongly) at a window of ANOTHER song; only a distractor drawn from that
    # other song could beat the true target, so with every valid distractor drawn the score is 1 iff
    # within-song distractors are all from the same song — and the segment-level metric (which may draw
    # from other songs) must then miss
    n_songs, per = 4, 12
    g = torch.Generator().manual_seed(0)
    # orthonormal targets: similarities are exactly 1 (own), 3 (the other song's window), 0 (the rest)
    targets = torch.linalg.qr(torch.randn(64, n_songs * per, generator=g))[0].T.contiguous()
    song = torch.arange(n_songs * per) // per
    start = (torch.arange(n_songs * per) % per) * 250
    other = (torch.arange(n_songs * per) + per) % (n_songs * per)  # same position in the next song
    preds = targets + 3.0 * targets[other]
    within = Identification(per, "within_song", repeats=2)
    seg = Identification(n_songs * per, "segment", repeats=2)
    for m in (within, seg):
        _update(m, preds, targets, song, start)
    assert within.compute()["mean"].item() == 1.0
    assert seg.compute()["mean"].item() == 0.0

"""Time-matched and dataset-aware identification (chanmusic.evaluation.matched_identification), on hand-built
embeddings whose expected scores follow from their construction (chance levels counted by hand)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from chanmusic.evaluation.matched_identification import DatasetIdentification, TimeMatchedIdentification
from chanmusic.evaluation.metrics import Identification, MetricUnavailable

N_SONGS, N_TIMES, LENGTH, D = 10, 20, 100, 64


def _onset_locked(song_signal: float, seed: int = 0):
    """Every song heard from onset, one window per time step; audio = a song-and-time part + a part shared by
    every song at that time since onset (intros, build-ups). The 'EEG' prediction holds the shared time part (the
    onset-locked signal) plus ``song_signal`` × the true segment's own part."""
    g = torch.Generator().manual_seed(seed)
    own = torch.randn(N_SONGS, N_TIMES, D, generator=g)
    shared = torch.randn(N_TIMES, D, generator=g)
    audio = F.normalize(own + 1.5 * shared[None], dim=-1).reshape(-1, D)
    pred = (shared[None].expand(N_SONGS, -1, -1) + song_signal * own
            + 0.5 * torch.randn(N_SONGS, N_TIMES, D, generator=g)).reshape(-1, D)
    song = torch.arange(N_SONGS).repeat_interleave(N_TIMES)
    t = torch.arange(N_TIMES).repeat(N_SONGS)
    return dict(preds=pred, targets=audio, music=torch.arange(len(song)), song=song, genre=song % 3,
                stimulus=song, start=t * LENGTH, length=torch.full_like(song, LENGTH), segment=torch.arange(len(song)))


def _score(metric, batch, **extra):
    metric.update(**batch, **extra)
    return {k: float(v) for k, v in metric.compute().items()}


def test_onset_locked_eeg_fools_id50_but_not_the_time_matched_identification():
    batch = _onset_locked(song_signal=0.0)
    id50 = _score(Identification(50, "segment", repeats=10), batch)
    timed = _score(TimeMatchedIdentification(None, repeats=10), batch)
    assert id50["chance"] == pytest.approx(1 / 50)
    assert id50["mean"] > 10 / 50  # time since onset alone names the window among other times (10x chance)
    assert timed["n_way"] == N_SONGS and timed["chance"] == pytest.approx(1 / N_SONGS)  # 9 other songs at t
    assert abs(timed["mean"] - 1 / N_SONGS) < 0.06  # ... but not among other songs at the same time
    assert timed["ci95_low"] <= 1 / N_SONGS + 0.01


def test_the_time_matched_identification_sees_music():
    timed = _score(TimeMatchedIdentification(None, repeats=10), _onset_locked(song_signal=1.0))
    assert timed["mean"] > 0.8


def test_time_matched_distractors_are_only_at_the_same_time():
    batch = _onset_locked(song_signal=0.0)
    keep = ~((batch["song"] > 0) & (batch["start"] == 0))  # at time 0 only song 0 remains: no distractor
    batch = {k: v[keep] for k, v in batch.items()}
    r = _score(TimeMatchedIdentification(None, repeats=2), batch)
    assert r["n_excluded"] == 1 and r["n"] == int(keep.sum()) - 1
    with pytest.raises(MetricUnavailable):  # one song only: nobody has a distractor
        one = {k: v[batch["song"] == 0] for k, v in batch.items()}
        _score(TimeMatchedIdentification(None, repeats=2), one)


def _dataset_only(seed: int = 1):
    """Two datasets: A with songs 0-3 (genres 0, 0, 1, 1), B with songs 4-5 (both genre 2). Audio = a dataset
    part + a segment part; the prediction knows the dataset and nothing else."""
    g = torch.Generator().manual_seed(seed)
    song = torch.arange(6).repeat_interleave(30)
    ds = (song >= 4).long()
    genre = torch.tensor([0, 0, 1, 1, 2, 2])[song]
    part = torch.randn(2, D, generator=g)
    audio = F.normalize(2.0 * part[ds] + torch.randn(len(song), D, generator=g), dim=-1)
    pred = part[ds] + 0.3 * torch.randn(len(song), D, generator=g)
    t = torch.arange(30).repeat(6)
    batch = dict(preds=pred, targets=audio, music=torch.arange(len(song)), song=song, genre=genre, stimulus=song,
                 start=t * LENGTH, length=torch.full_like(song, LENGTH), segment=torch.arange(len(song)))
    return batch, ds


def test_song_chance_given_the_dataset():
    batch, ds = _dataset_only()
    r = _score(DatasetIdentification("song", own_dataset=False, repeats=20), batch, dataset=ds)
    assert r["n_way"] == 6 and r["chance"] == pytest.approx(1 / 6)
    hand = (120 * (1 / 4) + 60 * (1 / 2)) / 180  # A's windows: 4 own-dataset songs; B's: 2
    assert r["chance_dataset"] == pytest.approx(hand)
    assert abs(r["mean"] - hand) < 0.08 and r["mean"] > 1 / 6 + 0.08  # knowing the dataset is worth exactly that


def test_genre_identification_within_the_own_dataset_is_not_fooled_by_the_dataset():
    batch, ds = _dataset_only()
    pooled = _score(Identification(None, "genre", repeats=20), batch)
    assert pooled["mean"] > pooled["chance"] + 0.15  # today's pooled genre_id: the dataset gives it away
    own = _score(DatasetIdentification("genre", own_dataset=True, repeats=20), batch, dataset=ds)
    assert own["n_way"] == 2 and own["n_excluded"] == 60  # B's windows: one genre in B, no distractor
    assert own["chance"] == pytest.approx(0.5) and abs(own["mean"] - 0.5) < 0.08

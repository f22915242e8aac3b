"""The batch gather of ``WindowDataset``: split over threads, or done in DataLoader workers (written into shared
memory), every field equals the windows sliced by hand from the recordings written, in the order asked for."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datamodules.cache import CACHE_VERSION, CacheWriter, PreparedCache
from datamodules.windows import WindowDataset, collate_batch

L = 6


@pytest.fixture()
def cache_and_segments(tmp_path):
    """Three recordings of different lengths ([T, C] = [31|23|40, 5]), windows every 3 samples, 4 music segments
    (distinct mels and CLAPs) spread over the windows."""
    rng = np.random.default_rng(3)
    recs = [rng.standard_normal((n, 5)).astype(np.float32) for n in (31, 23, 40)]
    w = CacheWriter(tmp_path / "c")
    recordings, segments = [], []
    for r, x in enumerate(recs):
        off = w.append_eeg(x)
        recordings.append({"dataset": "nmed-t", "subject": r + 1, "song": r, "stimulus": r, "offset": off,
                           "n_samples": len(x)})
        segments += [(r, r + 1, r, s, L, (r + s) % 4) for s in range(0, len(x) - L + 1, 3)]
    music = np.array([[k, 10 * k, L] for k in range(4)], dtype=np.int64)
    w.save_array("segments", np.array(segments, dtype=np.int64))
    w.save_array("music", music)
    w.save_array("clap", rng.standard_normal((4, 8)).astype(np.float32))
    w.save_array("mel", rng.standard_normal((4, 3, 2)).astype(np.float32))
    w.save_json("recordings.json", recordings)
    w.finish({"settings": {"version": CACHE_VERSION}, "n_recordings": 3, "n_segments": len(segments)})
    return PreparedCache.open(tmp_path / "c"), np.array(segments), recs


def _expected(cache, seg, recs, music_of_row, i):
    r, subj, song, s = seg[i, :4]
    m = music_of_row[i]
    return {"eeg": recs[r][s:s + L].T, "mel": np.asarray(cache.mel)[m], "clap": np.asarray(cache.clap)[m],
            "song": song, "subject": subj, "recording": r, "segment": i, "music": m,
            "stimulus": cache.music[m, 0], "start": cache.music[m, 1], "length": cache.music[m, 2]}


def _check(batch, pick, cache, seg, recs, music_of_row):
    assert batch["eeg"].shape == (len(pick), 5, L) and batch["eeg"].is_contiguous()
    for j, i in enumerate(pick):
        for k, v in _expected(cache, seg, recs, music_of_row, i).items():
            assert np.array_equal(batch[k][j].numpy(), v), (k, i)
    assert batch["channel_mask"].all() and batch["song"].dtype == torch.int64


@pytest.mark.parametrize("threads", [1, 3])
def test_gather_on_threads_equals_hand_sliced_windows(cache_and_segments, threads):
    cache, seg, recs = cache_and_segments
    music_of_row = np.roll(seg[:, 5], 5)  # a control-like pairing: not the segment's own music
    ds = WindowDataset(cache, np.arange(len(seg)), music_of_row, np.asarray(cache.clap))
    pick = [len(seg) - 1, 0, 7, 3, 3, 12, 20, 1]  # unsorted, across recordings, one repeated
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        batch = collate_batch(ds.__getitems__(pick))
    finally:
        torch.set_num_threads(old)
    _check(batch, pick, cache, seg, recs, music_of_row)


def test_worker_batches_equal_in_process_batches(cache_and_segments):
    cache, seg, recs = cache_and_segments
    rows = np.arange(len(seg))
    ds = WindowDataset(cache, rows, seg[:, 5], np.asarray(cache.clap))
    kw = dict(batch_size=5, shuffle=False, collate_fn=collate_batch)
    here = list(DataLoader(ds, num_workers=0, **kw))
    there = list(DataLoader(ds, num_workers=2, **kw))
    assert len(here) == len(there) == -(-len(seg) // 5)
    for a, b in zip(here, there):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    _check(there[1], list(range(5, 10)), cache, seg, recs, seg[:, 5])

"""The channel-major EEG cache: same values as the recordings written, windows equal hand-sliced [T, C] data,
and a cache of the old (time-major) format is refused with a one-line fix."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from datamodules.cache import CACHE_VERSION, CacheError, CacheWriter, PreparedCache
from datamodules.windows import WindowDataset, collate_batch


def _write_cache(path, recs_tc, length=5):
    """A minimal complete cache of the [T, C] recordings ``recs_tc`` cut into ``length``-sample windows."""
    w = CacheWriter(path)
    recordings, segments = [], []
    for r, x in enumerate(recs_tc):
        off = w.append_eeg(x)
        recordings.append({"dataset": "nmed-t", "subject": 1, "song": r, "stimulus": r, "offset": off,
                           "n_samples": len(x)})
        segments += [(r, 1, r, s, length, 0) for s in range(0, len(x) - length + 1, 2)]
    w.save_array("segments", np.array(segments, dtype=np.int64))
    w.save_array("music", np.zeros((1, 3), dtype=np.int64))
    w.save_array("clap", np.ones((1, 4), dtype=np.float32))
    w.save_array("mel", np.zeros((1, 2, 3), dtype=np.float32))
    w.save_json("recordings.json", recordings)
    w.finish({"settings": {"version": CACHE_VERSION}, "n_recordings": len(recordings),
              "n_segments": len(segments)})
    return PreparedCache.open(path), np.array(segments)


def test_eeg_file_holds_each_recording_channel_major(tmp_path):
    rng = np.random.default_rng(0)
    recs = [rng.standard_normal((11, 3)).astype(np.float32), rng.standard_normal((7, 3)).astype(np.float32)]
    cache, _ = _write_cache(tmp_path / "c", recs)
    raw = np.fromfile(tmp_path / "c" / "eeg.f32", dtype=np.float32)
    # by hand: recording 0's channel 0 over time, then its channel 1, ..., then recording 1
    expected = np.concatenate([recs[0][:, 0], recs[0][:, 1], recs[0][:, 2], recs[1][:, 0], recs[1][:, 1],
                               recs[1][:, 2]])
    assert np.array_equal(raw, expected)  # same values and count as the [T, C] input, only the order differs
    assert np.array_equal(cache.recording_eeg(1), recs[1].T)
    assert cache.manifest["eeg_shape"] == [18, 3]


def test_window_batch_equals_hand_sliced_windows(tmp_path):
    rng = np.random.default_rng(1)
    recs = [rng.standard_normal((12, 4)).astype(np.float32), rng.standard_normal((9, 4)).astype(np.float32)]
    cache, seg = _write_cache(tmp_path / "c", recs)
    rows = np.arange(len(seg))
    ds = WindowDataset(cache, rows, seg[:, 5], np.asarray(cache.clap))
    pick = [len(seg) - 1, 0, 3]
    b = collate_batch(ds.__getitems__(pick))
    for j, i in enumerate(pick):
        r, s = seg[i, 0], seg[i, 3]
        assert torch.equal(b["eeg"][j], torch.from_numpy(recs[r][s:s + 5].T.copy()))
    assert b["eeg"].shape == (3, 4, 5) and b["eeg"].is_contiguous()
    assert torch.equal(ds[2]["eeg"], torch.from_numpy(recs[seg[2, 0]][seg[2, 3]:seg[2, 3] + 5].T.copy()))


def test_cache_of_an_older_format_is_refused_with_the_fix(tmp_path):
    cache, _ = _write_cache(tmp_path / "c", [np.zeros((8, 2), np.float32)])
    man = tmp_path / "c" / "manifest.json"
    m = json.loads(man.read_text())
    m["settings"]["version"] = 1
    man.write_text(json.dumps(m))
    with pytest.raises(CacheError) as e:
        PreparedCache.open(tmp_path / "c")
    msg = str(e.value)
    assert "cache format 1" in msg and "chanmusic prepare" in msg and "\n" not in msg

"""Splits fixed in time: window lengths share test spans, the gap holds in every mode, hearings stay together,
NMED-H reads the first hearing by default, fractions hold per subject, bad settings are one clear error."""
from __future__ import annotations

import numpy as np
import pytest

from datamodules.datamodule import NMEDDataModule
from datamodules.splits import TEST, SplitConfig, split_windows


def _table(n_subj=3, n_rec=4, seconds=80.0, window_s=2.0, stride_s=2.0, sfreq=125.0):
    L, hop, T = int(window_s * sfreq), int(stride_s * sfreq), int(seconds * sfreq)
    rows = [(s * n_rec + g, s, st, L) for s in range(n_subj) for g in range(n_rec) for st in range(0, T - L + 1, hop)]
    a = np.array(rows)
    n_samples = {s * n_rec + g: T for s in range(n_subj) for g in range(n_rec)}
    return a[:, 0], a[:, 1], a[:, 2], a[:, 3], n_samples


def _min_distance(rec, start, length, a, b):
    """Smallest gap (samples) between a window of ``a`` and one of ``b`` in the same recording (negative: overlap)."""
    best = np.inf
    for r in np.unique(rec[a]):
        x, y = a[rec[a] == r], b[rec[b] == r]
        if not len(y):
            continue
        xs, xe, ys, ye = start[x][:, None], (start + length)[x][:, None], start[y][None, :], (start + length)[y][None, :]
        best = min(best, np.maximum(ys - xe, xs - ye).min())
    return best


@pytest.mark.parametrize("mode", ["random", "block", "subjects"])
@pytest.mark.parametrize("window_s,stride_s", [(2.0, 2.0), (1.0, 0.5), (8.0, 6.4)])
def test_the_gap_separates_held_out_spans_in_every_mode(mode, window_s, stride_s):
    rec, subj, start, length, n = _table(window_s=window_s, stride_s=stride_s)
    gap_s = 3.0
    sp = split_windows(rec, subj, start, length, SplitConfig(mode, 0.2, 0.2, seed=1, gap_s=gap_s), 125.0,
                       n_samples=n)
    gap = int(gap_s * 125)
    assert _min_distance(rec, start, length, sp.train, sp.test) >= gap
    assert _min_distance(rec, start, length, sp.train, sp.val) >= gap
    assert _min_distance(rec, start, length, sp.val, sp.test) >= gap
    assert sp.dropped_gap + sp.dropped_overlap > 0 or mode == "subjects"  # what the gap costs is counted
    # gap None: the window length (the data module's default)
    sp2 = split_windows(rec, subj, start, length, SplitConfig(mode, 0.2, 0.2, seed=1, gap_s=None), 125.0,
                        n_samples=n, gap_default_s=window_s)
    assert _min_distance(rec, start, length, sp2.train, sp2.test) >= int(window_s * 125)


def test_test_spans_do_not_depend_on_the_window_and_fractions_hold_per_subject():
    spans = {}
    for window_s, stride_s in ((1.0, 1.0), (2.0, 0.5), (8.0, 6.4)):
        rec, subj, start, length, n = _table(n_subj=4, n_rec=10, seconds=270.0, window_s=window_s, stride_s=stride_s)
        sp = split_windows(rec, subj, start, length, SplitConfig("random", 0.05, 0.05, seed=42), 125.0,
                           n_samples=n, gap_default_s=window_s)
        spans[window_s] = {r: (e.tolist(), lab.tolist()) for r, (e, lab) in sp.spans.items()}
        # every test window lies inside test spans
        for i in sp.test:
            e, lab = sp.spans[int(rec[i])]
            k0 = np.searchsorted(e, start[i], side="right") - 1
            k1 = np.searchsorted(e, start[i] + length[i] - 1, side="right") - 1
            assert all(lab[k] == TEST for k in range(k0, k1 + 1))
    assert spans[1.0] == spans[2.0] == spans[8.0]
    # 270-s recordings: 33 spans of 8 s; per subject 10 recordings -> 5% of 330 spans = 16.5 -> 16 or 17
    for s in range(4):
        n_test = sum(int((np.array(lab) == TEST).sum()) for r, (e, lab) in spans[1.0].items() if r // 10 == s)
        assert n_test in (16, 17), n_test


def test_hearings_of_one_subject_and_stimulus_share_their_spans():
    rec, subj, start, length, n = _table(n_subj=2, n_rec=4)
    group = {r: r // 2 for r in n}  # recordings 2k and 2k+1: hearings a and b of one stimulus
    sp = split_windows(rec, subj, start, length, SplitConfig("random", 0.2, 0.1, seed=0), 125.0, n_samples=n,
                       group=group, gap_default_s=2.0)
    for r in range(0, 8, 2):
        assert [x.tolist() for x in sp.spans[r]] == [x.tolist() for x in sp.spans[r + 1]]
        t_a = set(start[sp.test][rec[sp.test] == r])
        assert t_a and t_a == set(start[sp.test][rec[sp.test] == r + 1])


def test_bad_split_settings_are_one_clear_error():
    rec, subj, start, length, n = _table(seconds=20.0)
    with pytest.raises(ValueError, match=r"data\.gap_s: 30 s .* shortest recording \(20\.0 s\) — lower data\.gap_s"):
        split_windows(rec, subj, start, length, SplitConfig(gap_s=30.0), 125.0, n_samples=n)
    with pytest.raises(ValueError, match=r"data\.span_s"):
        split_windows(rec, subj, start, length, SplitConfig(span_s=0.0), 125.0, n_samples=n)


# ---- through the data module: pretraining (8-s windows) and alignment (1-s windows) of one experiment ----------

@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("split_cache")


def _dm(root, cache, **kw):
    dm = NMEDDataModule(str(root), cache_dir=str(cache), **kw)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _key(dm, r):
    rec = dm.cache.recordings[int(r)]
    return rec["dataset"], rec["subject"], rec["stimulus"], rec["hearing"]


def test_pretraining_and_alignment_windows_share_test_spans(tmp_path_factory, cache):
    from datamodules.synthetic import write_demo

    root = write_demo(tmp_path_factory.mktemp("spans") / "nmed-t", seed=0, n_subjects=2, duration_s=48.0,
                      songs=[0, 1])
    pre = _dm(root, cache, window_s=8.0, stride_s=6.4, test_fraction=0.1)  # the paper's pretraining windows
    ali = _dm(root, cache, window_s=1.0, test_fraction=0.1)                # ... and its alignment windows
    spans_pre = {_key(pre, r): [x.tolist() for x in s] for r, s in pre.split.spans.items()}
    spans_ali = {_key(ali, r): [x.tolist() for x in s] for r, s in ali.split.spans.items()}
    assert spans_pre == spans_ali  # the same spans of recording time, whatever the window
    # no pretraining window (train or val) overlaps an alignment test window, and pretraining keeps its 8-s gap
    for part in ("train", "val"):
        rows = getattr(pre.split, part)
        for r in np.unique(pre.cache.segments[rows, 0]):
            k = _key(pre, r)
            pseg = pre.cache.segments[rows][pre.cache.segments[rows, 0] == r]
            r_ali = next(i for i in range(len(ali.cache.recordings)) if _key(ali, i) == k)
            tseg = ali.cache.segments[ali.split.test][ali.cache.segments[ali.split.test, 0] == r_ali]
            if not len(tseg):
                continue
            dist = np.maximum(tseg[None, :, 3] - (pseg[:, None, 3] + pseg[:, None, 4]),
                              pseg[:, None, 3] - (tseg[None, :, 3] + tseg[None, :, 4]))
            assert dist.min() >= 8 * 125, (part, k, dist.min())


def test_nmed_h_reads_the_first_hearing_by_default(demo_root_h, cache):
    dm = _dm(demo_root_h, cache, dataset="nmed-h", window_s=2.0)
    assert {r["hearing"] for r in dm.cache.recordings} == {"a"}
    both = _dm(demo_root_h, cache, dataset="nmed-h", window_s=2.0, hearings=["a", "b"], test_fraction=0.2)
    recs = both.cache.recordings
    assert {r["hearing"] for r in recs} == {"a", "b"}
    # both hearings read: a subject's song-time is on one side for both hearings
    seg = both.cache.segments
    test = {(_key(both, r)[:3], int(st)) for r, st in seg[both.split.test][:, [0, 3]]}
    for part in ("train", "val"):
        other = {(_key(both, r)[:3], int(st)) for r, st in seg[getattr(both.split, part)][:, [0, 3]]}
        assert not test & other
    by_hearing = {h: {(k, st) for (k, st) in test if any(_key(both, i)[:3] == k and _key(both, i)[3] == h
                                                           for i in range(len(recs)))} for h in "ab"}
    assert by_hearing["a"] == by_hearing["b"]

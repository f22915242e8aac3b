import numpy as np
import pytest

from datamodules.splits import SplitConfig, split_windows


def _table(n_subj=3, n_songs=4, n_win=40, stride=250, length=250):
    rows = []
    for s in range(n_subj):
        for g in range(n_songs):
            rec = s * n_songs + g
            for w in range(n_win):
                rows.append((rec, s, w * stride, length))
    a = np.array(rows)
    return a[:, 0], a[:, 1], a[:, 2], a[:, 3]


def _overlaps(rec, start, length, a, b):
    for i in a:
        same = b[rec[b] == rec[i]]
        if np.any((start[same] < start[i] + length[i]) & (start[same] + length[same] > start[i])):
            return True
    return False


@pytest.mark.parametrize("stride", [250, 125, 50])
def test_random_split_has_no_overlap_and_is_seeded(stride):
    rec, subj, start, length = _table(stride=stride)
    cfg = SplitConfig("random", 0.05, 0.05, seed=3)
    sp = split_windows(rec, subj, start, length, cfg, 125.0)
    assert not _overlaps(rec, start, length, sp.test, np.concatenate([sp.train, sp.val]))
    assert not _overlaps(rec, start, length, sp.val, sp.train)
    assert len(set(sp.train) & set(sp.test)) == 0
    again = split_windows(rec, subj, start, length, cfg, 125.0)
    assert np.array_equal(sp.test, again.test) and np.array_equal(sp.train, again.train)
    other = split_windows(rec, subj, start, length, SplitConfig("random", 0.05, 0.05, seed=4), 125.0)
    assert not np.array_equal(sp.test, other.test)
    if stride < 250:
        assert sp.dropped_overlap > 0  # straddling windows are dropped and counted
    else:
        assert sp.dropped_overlap == 0
    # within-subject: every subject has test windows
    assert set(subj[sp.test]) == set(subj)


def test_block_split_takes_the_end_with_a_gap():
    rec, subj, start, length = _table()
    sp = split_windows(rec, subj, start, length, SplitConfig("block", 0.1, 0.1, gap_s=2.0), 125.0)
    for r in np.unique(rec):
        t = start[sp.test][rec[sp.test] == r]
        tr = start[sp.train][rec[sp.train] == r]
        assert t.min() >= tr.max() + 250 + 250  # 2 s gap at 125 Hz = 250 samples
    assert sp.dropped_gap > 0


def test_subject_split_holds_out_whole_subjects():
    rec, subj, start, length = _table(n_subj=5)
    sp = split_windows(rec, subj, start, length, SplitConfig("subjects", 0.2, 0.1, seed=0), 125.0)
    assert set(subj[sp.test]).isdisjoint(set(subj[sp.train]) | set(subj[sp.val]))
    sp2 = split_windows(rec, subj, start, length, SplitConfig("subjects", test_subjects=[1, 2]), 125.0)
    assert set(subj[sp2.test]) == {1, 2}
    with pytest.raises(ValueError, match="not in the data"):
        split_windows(rec, subj, start, length, SplitConfig("subjects", test_subjects=[99]), 125.0)


def test_hearing_split_never_puts_a_recording_on_both_sides():
    rec, subj, start, length = _table()
    hearing = np.where(rec % 2 == 0, "a", "b")
    sp = split_windows(rec, subj, start, length, SplitConfig("hearing"), 125.0, hearing)
    assert set(rec[sp.test]).isdisjoint(set(rec[sp.train]) | set(rec[sp.val]))
    assert set(hearing[sp.test]) == {"b"}
    with pytest.raises(ValueError, match="nmed-h"):
        split_windows(rec, subj, start, length, SplitConfig("hearing"), 125.0, np.full(len(rec), "a"))


def test_bad_settings_give_clear_errors():
    rec, subj, start, length = _table()
    with pytest.raises(ValueError, match="unknown mode"):
        split_windows(rec, subj, start, length, SplitConfig("nope"), 125.0)
    with pytest.raises(ValueError, match="no windows"):
        split_windows(rec[:0], subj[:0], start[:0], length[:0], SplitConfig(), 125.0)

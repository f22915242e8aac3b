"""Splits through the data module on demo data: recordings never straddle a recording-changing split."""
import numpy as np
import pytest

from datamodules.datamodule import NMEDDataModule


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache folder for the module: splits do not change the cache key, so it is prepared once."""
    return tmp_path_factory.mktemp("cache")


def _dm(root, cache, **kw):
    dm = NMEDDataModule(str(root), cache_dir=str(cache), window_s=2.0, batch_size=8, **kw)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_cross_hearing_split_on_nmed_h(demo_root_h, cache):
    dm = _dm(demo_root_h, cache, dataset="nmed-h", split="hearing")
    seg, recs = dm.cache.segments, dm.cache.recordings
    hearing = np.array([r["hearing"] for r in recs])
    test_recs = set(seg[dm.split.test, 0].tolist())
    train_recs = set(seg[dm.split.train, 0].tolist()) | set(seg[dm.split.val, 0].tolist())
    assert test_recs and train_recs and test_recs.isdisjoint(train_recs)
    assert set(hearing[list(test_recs)]) == {"b"} and set(hearing[list(train_recs)]) == {"a"}
    # the same music (song x condition) is heard on both sides: a different recording of the same audio
    stim = dm.cache.music[:, 0]
    assert set(stim[dm.music_of_row[dm.split.test]]) <= set(stim[dm.music_of_row[dm.split.train]])


def test_hearing_split_on_nmed_t_is_a_clear_error(demo_root, cache):
    with pytest.raises(ValueError, match="nmed-h"):
        _dm(demo_root, cache, split="hearing")


def test_subject_split_through_the_data_module(demo_root, cache):
    dm = _dm(demo_root, cache, split="subjects", test_subjects=[1])
    subj = dm.cache.segments[:, 1]
    assert set(subj[dm.split.test]) == {1}
    assert 1 not in set(subj[dm.split.train]) | set(subj[dm.split.val])

"""Several datasets in one run: the pool's subjects and songs, the ways to name roots, and bad selections as one
clear error naming the field and the fix."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from datamodules.datamodule import NMEDDataModule
from datamodules.nmed import NMEDFormatError


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("selection_cache")


def _dm(root, cache, **kw):
    return NMEDDataModule(root if isinstance(root, (dict, list)) else str(root), cache_dir=str(cache),
                          **{"window_s": 4.0, **kw})


def test_the_pool_namespaces_subjects_and_has_every_song(pool_root, cache):
    dm = _dm(pool_root, cache, dataset=["nmed-t", "nmed-h"], songs=[0, 1, 10, 11])
    dm.prepare_data()
    dm.setup("fit")
    seg, recs = dm.cache.segments, dm.cache.recordings
    # subject 1 of NMED-T and subject 1 of NMED-H are two people: 1 and 1001
    assert sorted(np.unique(seg[:, 1]).tolist()) == [1, 2, 1001, 1002]
    assert sorted(np.unique(seg[:, 2]).tolist()) == [0, 1, 10, 11]
    assert {(r["dataset"], r["subject_id"]) for r in recs} >= {("nmed-t", 1), ("nmed-h", 1001)}
    assert dm.cache_path().name.startswith("nmed-t+nmed-h-")
    # the same selection named three ways is one cache
    by_dict = _dm({"nmed-h": str(pool_root / "nmed-h"), "nmed-t": str(pool_root / "nmed-t")}, cache,
                  dataset=["nmed-h", "nmed-t"], songs=[0, 1, 10, 11])
    by_list = _dm([str(pool_root / "nmed-t"), str(pool_root / "nmed-h")], cache, dataset=["nmed-t", "nmed-h"],
                  songs=[0, 1, 10, 11])
    assert by_dict.cache_path() == by_list.cache_path() == dm.cache_path()
    # ... and a different selection is another
    assert _dm(pool_root / "nmed-t", cache, songs=[0, 1]).cache_path() != dm.cache_path()
    # the pool's cache key covers both datasets' files
    assert [s["dataset"] for s in dm.prepare_settings()["sources"]] == ["nmed-t", "nmed-h"]


def test_bad_selections_are_one_clear_error(pool_root, cache, tmp_path):
    pool = ["nmed-t", "nmed-h"]
    cases = [
        (dict(root={"nmed-t": str(pool_root / "nmed-t")}, dataset=pool), r"data\.root: no folder for nmed-h — "),
        (dict(root=str(pool_root / "nmed-t"), dataset=pool), r"data\.root: .* no nmed-t/, nmed-h/ subfolder — give"),
        (dict(root=[str(pool_root / "nmed-t")], dataset=pool), r"data\.root: 1 folder\(s\) for 2 dataset"),
        (dict(root=str(pool_root), dataset=pool, audio_root=str(tmp_path)), r"data\.audio_root: one audio folder"),
        (dict(root=str(pool_root), dataset=pool, songs=[0, 1]), r"data\.songs: selects no song of nmed-h — add"),
        (dict(root=str(pool_root), dataset=["nmed-x"]), r"data\.dataset: 'nmed-x' is not"),
        (dict(root=str(pool_root / "nmed-h"), dataset="nmed-h", hearings=["c"]), r"data\.hearings: \['c'\]"),
        (dict(root=str(pool_root / "nmed-t"), hearings=["a", "b"]), r"data\.hearings: .* NMED-T has one hearing"),
        (dict(root=str(pool_root / "nmed-t"), split="hearing"), r"data\.split: hearing needs NMED-H"),
        (dict(root=str(pool_root), dataset=pool, subjects=["nmed-x:1"]), r"data\.subjects: 'nmed-x:1' names no dataset"),
    ]
    for kw, pattern in cases:
        root = kw.pop("root")
        with pytest.raises(ValueError, match=pattern):
            _dm(root, cache, **kw)


def test_a_subject_id_in_both_datasets_must_be_named(pool_root, cache):
    dm = _dm(pool_root, cache, dataset=["nmed-t", "nmed-h"], songs=[0, 10], subjects=[1])
    with pytest.raises(ValueError, match=r"data\.subjects: subject 1 is in both nmed-t and nmed-h .* write "
                                         r"'nmed-t:1' or 'nmed-h:1'"):
        dm.prepare_data()
    named = _dm(pool_root, cache, dataset=["nmed-t", "nmed-h"], songs=[0, 10], subjects=["nmed-h:1", "nmed-t:2"])
    named.prepare_data()
    named.setup("fit")
    assert sorted(np.unique(named.cache.segments[:, 1]).tolist()) == [2, 1001]
    with pytest.raises(ValueError, match=r"data\.subjects: nmed-h has no subject\(s\) \[7\]"):
        _dm(pool_root, cache, dataset=["nmed-t", "nmed-h"], songs=[0, 10], subjects=["nmed-h:7"]).prepare_data()
    # the same rule for the subjects split's held-out subjects
    xs = _dm(pool_root, cache, dataset=["nmed-t", "nmed-h"], songs=[0, 10], split="subjects", test_subjects=[2])
    xs.prepare_data()
    with pytest.raises(ValueError, match=r"data\.test_subjects: subject 2 is in both"):
        xs.setup("fit")
    ok = _dm(pool_root, cache, dataset=["nmed-t", "nmed-h"], songs=[0, 10], split="subjects",
             test_subjects=["nmed-h:2"])
    ok.setup("fit")
    assert set(ok.cache.segments[ok.split.test, 1].tolist()) == {1002}


def test_a_hearing_not_in_the_files_is_a_clear_error(pool_root, tmp_path, cache):
    # an NMED-H folder whose archive holds first hearings only
    root = tmp_path / "nmed-h-a"
    root.mkdir()
    src = pool_root / "nmed-h" / "CleanEEG_aggregatedByStimulus_orig.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(root / src.name, "w") as zout:
        for name in zin.namelist():
            if "_a_Imputed" in name:
                zout.writestr(name, zin.read(name))
    (root / "stimuli").symlink_to(pool_root / "nmed-h" / "stimuli")
    with pytest.raises(NMEDFormatError, match=r"data\.hearings: .* has hearing \['b'\] \(the files hold \['a'\]\)"):
        _dm(root, cache, dataset="nmed-h", hearings=["b"]).prepare_data()

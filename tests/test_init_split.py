"""A pretraining checkpoint records its split, and alignment refuses one that trained on its test windows
(issue 28, item 6; ``chanmusic.stages.init_from.check_init_split``)."""
from __future__ import annotations

import logging

import pytest
import torch

from chanmusic.core.errors import ProvenanceError
from chanmusic.evaluation.provenance import fit_record
from chanmusic.stages.init_from import check_init_split
from datamodules.datamodule import NMEDDataModule


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from datamodules.synthetic import write_demo

    return write_demo(tmp_path_factory.mktemp("init_split") / "nmed-t", seed=0, n_subjects=2, duration_s=48.0,
                      songs=[0, 1])


def _dm(root, cache, **kw):
    dm = NMEDDataModule(str(root), cache_dir=str(cache), test_fraction=0.1, **kw)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _pretraining_checkpoint(path, dm):
    torch.save({"state_dict": {}, "chanmusic_provenance": fit_record(dm)}, path)  # what ProvenanceCallback stores
    return path


def test_a_pretraining_on_the_same_split_settings_is_accepted(root, tmp_path):
    pre = _dm(root, tmp_path / "c", window_s=8.0, stride_s=6.4)  # the paper's 8-s pretraining windows
    ali = _dm(root, tmp_path / "c", window_s=1.0)
    ck = _pretraining_checkpoint(tmp_path / "pre.ckpt", pre)
    assert check_init_split(ali, ck).startswith("checked")


def test_a_pretraining_that_saw_the_test_spans_is_refused_in_one_line(root, tmp_path):
    pre = _dm(root, tmp_path / "c", window_s=2.0, split_seed=7)  # another split: it trains on our test spans
    ali = _dm(root, tmp_path / "c", window_s=1.0)
    ck = _pretraining_checkpoint(tmp_path / "pre.ckpt", pre)
    with pytest.raises(ProvenanceError) as e:
        check_init_split(ali, ck)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("model.init_from:") and "test windows" in msg and " — " in msg


def test_a_checkpoint_without_a_record_is_warned_about(root, tmp_path, caplog):
    ali = _dm(root, tmp_path / "c", window_s=1.0)
    torch.save({"state_dict": {}}, tmp_path / "old.ckpt")
    with caplog.at_level(logging.WARNING, logger="chanmusic"):
        assert check_init_split(ali, tmp_path / "old.ckpt") == "not recorded"
    assert "records no training split" in caplog.text

"""New music (issue 32): the leave-songs-out split, its folds, and that nothing of a held-out song reaches training.

Every check reads what the code actually serves (the data module's batches, the ridge adapter's fitting set, a
checkpoint's recorded training spans, the runner's step settings), never a flag. The expected song sets come from
the demo generator's song list and the song table, not from the split code.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from chanmusic.core.errors import ProvenanceError
from chanmusic.evaluation.provenance import fit_record
from chanmusic.stages.init_from import check_init_split
from datamodules.datamodule import NMEDDataModule
from datamodules.validate import SettingError
from datamodules.songs import SONGS

SONG_LIST = [0, 1, 2, 3]
HELD = [1, 3]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from datamodules.synthetic import write_demo

    return write_demo(tmp_path_factory.mktemp("new_music") / "nmed-t", seed=0, n_subjects=2, duration_s=30.0,
                      songs=SONG_LIST)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("new_music_cache")


def _dm(root, cache, **kw):
    kw = {"split": "songs", "test_songs": HELD, "window_s": 2.0, "stride_s": 2.0, "batch_size": 8,
          "val_fraction": 0.2, "control_min_shift_s": 8.0, **kw}
    dm = NMEDDataModule(str(root), cache_dir=str(cache), **kw)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _music_of_songs(dm, songs) -> set[int]:
    """Music segment ids (the audio: CLAP, mel) of every cached window of ``songs``."""
    seg = dm.cache.segments
    return set(seg[np.isin(seg[:, 2], list(songs)), 5].tolist())


def _served(loader) -> dict[str, set[int]]:
    out = {"song": set(), "music": set(), "segment": set()}
    for batch in loader:
        for k in out:
            out[k] |= set(batch[k].tolist())
    return out


@pytest.mark.parametrize("control", ["none", "shift", "shuffle"])
def test_no_eeg_or_audio_of_a_held_out_song_reaches_training_or_validation(root, cache, control):
    dm = _dm(root, cache, control=control)
    held_music = _music_of_songs(dm, HELD)
    for part, loader in (("train", dm.train_dataloader()), ("val", dm.val_dataloader())):
        got = _served(loader)
        assert got["song"] and not got["song"] & set(HELD), part            # EEG windows of the other songs only
        assert not got["music"] & held_music, part                          # and never a held-out song's audio
    test = _served(dm.test_dataloader())
    assert test["song"] == set(HELD)
    # every window of a held-out song (every subject, the whole recording) is a test window
    seg = dm.cache.segments
    assert test["segment"] == set(np.flatnonzero(np.isin(seg[:, 2], HELD)).tolist())
    if control == "shift":   # the control keeps each recording's music within its recording
        assert not _served(dm.test_dataloader())["music"] - held_music


def test_clap_centring_uses_training_songs_only(root, cache):
    dm = _dm(root, cache)
    raw = np.asarray(dm.cache.clap, dtype=np.float64)
    train_music = sorted(_music_of_songs(dm, set(SONG_LIST) - set(HELD)) & set(dm.music_of_row[dm.split.train]))
    np.testing.assert_allclose(dm.clap_mean, raw[train_music].mean(0), rtol=1e-5, atol=1e-6)


class _Stage(nn.Module):
    """What ``fit_adapter`` needs of a stage: no trainer, CPU, train/eval."""

    _trainer = None
    device = torch.device("cpu")


def test_the_ridge_adapter_is_fitted_on_training_songs_only(root, cache, monkeypatch):
    from chanmusic.core.ridge import RidgeAdapter
    from chanmusic.stages.adapter import fit_adapter

    dm = _dm(root, cache)
    raw = torch.as_tensor(np.asarray(dm.cache.clap), dtype=torch.float32)
    seen = {}
    orig = RidgeAdapter.fit.__func__

    def spy(cls, X, Y, *a, **k):
        seen["X"], seen["Y"] = X, Y
        return orig(cls, X, Y, *a, **k)

    monkeypatch.setattr(RidgeAdapter, "fit", classmethod(spy))
    embed = lambda eeg, mask: eeg.flatten(1)[:, :16]  # noqa: E731 - any function of the EEG
    ad = fit_adapter(_Stage(), dm, embed, raw, 16, [1.0, 10.0], False)
    held = sorted(_music_of_songs(dm, HELD))
    assert ad.n_train == len(seen["Y"]) == len(dm.split.train)
    # no row of the fitting targets is a held-out song's CLAP embedding, and every row is one of the others'
    d_held = torch.cdist(seen["Y"].double(), raw[held].double()).min(1).values
    d_train = torch.cdist(seen["Y"].double(), raw[sorted(_music_of_songs(dm, set(SONG_LIST) - set(HELD)))]
                          .double()).min(1).values
    assert (d_held > 1e-6).all() and (d_train < 1e-6).all()
    # the EEG fitted on: the embeddings of the training windows, none of a held-out song's
    train_eeg = torch.stack([dm.dataset_for("train")[i]["eeg"] for i in range(len(dm.split.train))])
    torch.testing.assert_close(seen["X"], embed(train_eeg, None))


def test_identification_is_among_the_held_out_songs(root, cache):
    """song_id's candidates are the test set's songs, i.e. the held-out ones (n_way = their number); id50's
    distractors are the held-out songs' segments (here fewer than 50: n_way = every other test segment + 1)."""
    from chanmusic.evaluation.metrics import Identification

    dm = _dm(root, cache)
    ds = dm.dataset_for("test")
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=len(ds), collate_fn=dm.test_dataloader().collate_fn)))
    preds = torch.randn(len(ds), batch["clap"].shape[1], generator=torch.Generator().manual_seed(0))
    res = {}
    for name, m in (("song", Identification(None, "song")), ("id50", Identification(50, "segment"))):
        m.update(preds, batch["clap"], *(batch[k] for k in ("music", "song", "genre", "stimulus", "start", "length",
                                                            "segment")))
        res[name] = {k: float(v) for k, v in m.compute().items()}
    assert res["song"]["n_way"] == len(HELD) and res["song"]["chance"] == pytest.approx(1 / len(HELD))
    # 2-s windows at a 2-s hop never overlap: the candidates are every distinct held-out segment of the stimulus key
    assert res["id50"]["n_way"] == len(_music_of_songs(dm, HELD)) < 50


def _checkpoint(path, dm):
    torch.save({"state_dict": {}, "chanmusic_provenance": fit_record(dm)}, path)
    return path


def test_a_pretraining_on_the_folds_split_is_accepted(root, cache, tmp_path):
    pre = _dm(root, cache, window_s=4.0, stride_s=4.0)      # pretraining windows, same songs split
    ali = _dm(root, cache)
    assert "held-out songs [1, 3]" in check_init_split(ali, _checkpoint(tmp_path / "pre.ckpt", pre))


def test_a_pretraining_that_saw_a_held_out_song_is_refused_in_one_line(root, cache, tmp_path):
    pre = _dm(root, cache, split="random", test_songs=None, test_fraction=0.1)
    ali = _dm(root, cache)
    with pytest.raises(ProvenanceError) as e:
        check_init_split(ali, _checkpoint(tmp_path / "pre.ckpt", pre))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("model.init_from:") and "held-out song(s) [1, 3]" in msg and " — " in msg


def test_a_held_out_song_heard_by_another_subject_in_pretraining_is_refused(root, cache, tmp_path):
    """The time-overlap check alone misses this: the pretraining saw subject 2's recording of a held-out song, the
    alignment tests subject 1 only, so no recording is shared — the song is."""
    pre = _dm(root, cache, split="songs", test_songs=[0, 2], subjects=[2])     # trains on songs 1 and 3
    ali = _dm(root, cache, subjects=[1])
    from chanmusic.evaluation.provenance import overlap_count

    rec = fit_record(pre)
    assert overlap_count(ali, rec["train_spans"]) == 0
    with pytest.raises(ProvenanceError, match=r"held-out song\(s\) \[1, 3\]"):
        check_init_split(ali, _checkpoint(tmp_path / "pre.ckpt", pre))


@pytest.mark.parametrize("test_songs, words", [([1], "fewer than 2 songs"), ([1, 9], "not in the selected data"),
                                               ([0, 1, 2, 3], "leaves no training song")])
def test_bad_held_out_songs_are_refused(root, cache, test_songs, words):
    with pytest.raises(SettingError) as e:
        _dm(root, cache, test_songs=test_songs)
    assert str(e.value).startswith("--data.test_songs:") and words in str(e.value)


def test_stratified_folds_span_genres():
    from datamodules.song_split import stratified_folds

    genre = {s.index: s.genre for s in SONGS if s.dataset in ("nmed-t", "nmed-h")}
    folds = stratified_folds(sorted(genre), genre, 7)
    assert sorted(s for f in folds for s in f) == sorted(genre) and all(len(f) == 2 for f in folds)
    # NMED: 4 songs share bollywood-pop and 2 house: 14 songs, 7 folds, no fold holds two songs of one genre
    assert all(len({genre[s] for s in f}) == 2 for f in folds)
    with pytest.raises(ValueError, match="fewer than 2"):
        stratified_folds([0, 1, 2, 3, 4], genre, 3)


def test_song_folds_run_every_row_per_fold_with_the_pretraining_on_the_folds_split(tmp_path, monkeypatch):
    from chanmusic import report
    from chanmusic.runner import Runner, load_spec, plan_runs, save_spec
    from chanmusic.runner import folds
    from tooling.fake_runner import worker_cmd, write_fake_spec

    spec_path = write_fake_spec(tmp_path, rows=[{"name": "good", "label": "Good", "configs": ["good.yaml"],
                                                 "pretrain": ["pre.yaml"]}],
                                ablations=[], profile={"seeds": 1, "folds": "songs k=3"})
    out = tmp_path / "out"
    s = load_spec(spec_path, "quick", None, None, out)
    out.mkdir()
    save_spec(s, out)
    runner = Runner(s, out, worker_cmd=worker_cmd(tmp_path), printer=lambda *_: None)
    runner.prepare_caches = lambda plans: None
    monkeypatch.setattr(folds, "song_ids", lambda step, extra: [0, 1, 2, 3, 4, 7])
    statuses = runner.run_all(plan_runs(runner.spec, out))
    assert len(statuses) == 6 and all(st["status"] == "done" for st in statuses)
    assigned = json.loads((out / "folds.json").read_text())["test_songs"]
    assert sorted(s for f in assigned for s in f) == [0, 1, 2, 3, 4, 7] and all(len(f) == 2 for f in assigned)
    assert not any({3, 7} <= set(f) for f in assigned)      # the two house songs (song table) are in other folds
    for f, held in enumerate(assigned):
        for d in (out / "runs" / "good" / f"fold{f}" / "seed0" / "control" / "align",
                  out / "runs" / "_pretrain" / "pre" / f"fold{f}" / "seed0" / "pretrain"):
            over = (d / "compare_overrides.yaml").read_text()
            assert "split: songs" in over and "test_songs:\n  - " + "\n  - ".join(map(str, held)) in over, d
    md = report.write_results(out)[0] and (out / "results.md").read_text()
    for f, held in enumerate(assigned):
        assert f"### fold{f}: holds out songs {held[0]} ({SONGS[held[0]].title}" in md
    assert "## Main table" in md and md.index("## Main table") < md.index("## Per fold")

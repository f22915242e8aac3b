"""Issue 32 (new music): a fold with fewer than two held-out songs, held-out songs absent from the selection, and a
pretraining checkpoint that saw a held-out song are refused in one line naming the field, exit 2, nothing written."""
from __future__ import annotations

import pytest

from datamodules.synthetic import write_demo
from tooling.cli_cases import STAGE, assert_refused, files, run


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    """Three songs (0, 1, 2) x 2 subjects x 12 s, and one run fitted on the random split (it trains on every
    song)."""
    from chanmusic.cli import main

    base = tmp_path_factory.mktemp("new_music_bad")
    root = write_demo(base / "data", seed=0, n_subjects=2, duration_s=12.0, songs=[0, 1, 2])
    args = _args(root, base / "cache", base / "runs")
    try:
        main(["fit", *map(str, args)])
    except SystemExit as e:  # pragma: no cover - the fixture's fit must work
        raise AssertionError(f"the fixture's fit failed (exit {e.code})") from e
    ckpts = sorted((base / "runs").rglob("*.ckpt"))
    assert ckpts
    return root, base / "cache", ckpts[0]


def _args(root, cache, runs, *extra):
    return [*STAGE, "--data.root", root, "--data.cache_dir", cache, "--data.test_fraction", "0.25",
            "--data.val_fraction", "0.2", "--data.span_s", "4", "--data.batch_size", "16",
            "--data.control_min_shift_s", "4", "--trainer.max_epochs", "1", "--trainer.default_root_dir", runs,
            "--trainer.logger.init_args.save_dir", runs, "--trainer.enable_progress_bar", "false", *extra]


@pytest.mark.parametrize("held, words", [("[1]", "fewer than 2 songs"), ("[1, 5]", "not in the selected data")])
def test_bad_held_out_songs(three, capsys, tmp_path, held, words):
    root, cache, _ = three
    runs = tmp_path / "runs"
    code, err = run(["fit", *_args(root, cache, runs, "--data.split", "songs", "--data.test_songs", held)], capsys)
    line = assert_refused(code, err, "--data.test_songs")
    assert words in line
    assert not list(runs.rglob("*.ckpt")) and not list(runs.rglob("metrics.json"))


def test_test_songs_without_the_songs_split(three, capsys, tmp_path):
    root, cache, _ = three
    code, err = run(["fit", *_args(root, cache, tmp_path / "runs", "--data.test_songs", "[0, 1]")], capsys)
    assert "--data.split songs" in assert_refused(code, err, "--data.test_songs")


def test_a_pretraining_that_saw_a_held_out_song(three, capsys, tmp_path):
    root, cache, ckpt = three
    runs = tmp_path / "runs"
    code, err = run(["fit", *_args(root, cache, runs, "--data.split", "songs", "--data.test_songs", "[0, 1]",
                                   "--model.init_args.init_from", ckpt)], capsys)
    line = assert_refused(code, err, "model.init_from")
    assert "held-out song(s) [0, 1]" in line and "--data.test_songs" in line.split(" — ", 1)[1]
    assert not list(runs.rglob("*.ckpt"))


def test_song_folds_with_fewer_than_two_songs_each(three, capsys, tmp_path):
    root, cache, _ = three
    out = tmp_path / "out"
    code, err = run(["compare", "--rows", "linear_reference", "--seeds", "1", "--folds", "songs k=2", "--out", out,
                     "--no-report", "--", "--data.root", root, "--data.dataset", "nmed-t", "--data.cache_dir", cache],
                    capsys)
    line = assert_refused(code, err, "folds")
    assert "fewer than 2 songs per fold" in line and "songs [0, 1, 2]" in line
    assert not (out / "runs").exists() or not files(out / "runs")

"""Issue 30: song files checked against their dataset, and the pooled root in its mapping / list forms."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from datamodules.synthetic import write_demo
from tooling.cli_cases import STAGE, assert_refused, run


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """NMED-T (songs 0, 1 = song21, song22) and NMED-H (song 10 = song21) side by side, 2 subjects, 12 s."""
    base = tmp_path_factory.mktemp("pool30")
    t = write_demo(base / "nmed-t", dataset="nmed-t", seed=0, n_subjects=2, duration_s=12.0, songs=[0, 1])
    h = write_demo(base / "nmed-h", dataset="nmed-h", seed=1, n_subjects=2, duration_s=12.0, songs=[10],
                   conditions=("orig",))
    return t, h


def _pool_args(root, tmp_path, *extra):
    return [*STAGE, "--data.dataset", "[nmed-t, nmed-h]", "--data.root", root, "--data.cache_dir",
            tmp_path / "cache", *extra]


def test_swapped_pool_audio_folders_are_refused(pool, capsys, tmp_path):
    t, h = pool
    code, err = run(["prepare", *_pool_args(f"{{nmed-t: {t}, nmed-h: {h}}}", tmp_path, "--data.audio_root",
                                            f"{{nmed-t: {h / 'stimuli'}, nmed-h: {t / 'stimuli'}}}")], capsys)
    line = assert_refused(code, err, "--data.audio_root")
    assert "swapped" in line
    assert not list((tmp_path / "cache").rglob("manifest.json"))


def test_one_audio_folder_for_two_datasets_is_refused(pool, capsys, tmp_path):
    t, h = pool
    code, err = run(["prepare", *_pool_args(f"{{nmed-t: {t}, nmed-h: {h}}}", tmp_path, "--data.audio_root",
                                            f"{{nmed-t: {t / 'stimuli'}, nmed-h: {t / 'stimuli'}}}")], capsys)
    assert "both" in assert_refused(code, err, "--data.audio_root")


def test_truncated_wav_is_called_corrupt(world, capsys, tmp_path):
    root = world.copy_root(tmp_path / "data")
    wav = root / "stimuli" / "song21.wav"
    wav.write_bytes(wav.read_bytes()[:20000])  # the header still declares the whole song
    code, err = run(["prepare", *STAGE, "--data.root", root, "--data.cache_dir", tmp_path / "cache"], capsys)
    line = assert_refused(code, err, "song21.wav")
    assert "truncated or corrupt" in line and "complete copy" in line
    assert not list((tmp_path / "cache").rglob("manifest.json"))


def test_song_far_longer_than_its_eeg_is_refused(world, capsys, tmp_path):
    """A 60 s file for 12 s of EEG (another song, or another release's song21): not silently cropped."""
    root = world.copy_root(tmp_path / "data")
    audio, sr = sf.read(str(root / "stimuli" / "song21.wav"), dtype="float32")
    sf.write(str(root / "stimuli" / "song21.wav"), np.tile(audio, 5), sr)
    code, err = run(["prepare", *STAGE, "--data.root", root, "--data.cache_dir", tmp_path / "cache"], capsys)
    line = assert_refused(code, err, "song21.wav")
    assert "another song" in line and "--data.audio_root" in line


@pytest.mark.parametrize("form", ["mapping", "list"])
def test_pooled_root_mapping_and_list_fit_end_to_end(pool, capsys, tmp_path, form, monkeypatch):
    """The README's form of a pool's roots runs fit (the CLI made data paths absolute assuming one string)."""
    t, h = pool
    monkeypatch.chdir(tmp_path)
    root = f"{{nmed-t: {t}, nmed-h: {h}}}" if form == "mapping" else f"[{t}, {h}]"
    runs = tmp_path / "runs"
    code, err = run(["fit", *_pool_args(root, tmp_path, "--data.test_fraction", "0.25", "--data.val_fraction", "0.2",
                                        "--data.span_s", "4", "--data.batch_size", "16", "--trainer.max_epochs", "1",
                                        "--trainer.default_root_dir", runs, "--trainer.logger.init_args.save_dir",
                                        runs, "--trainer.enable_progress_bar", "false")], capsys)
    assert code == 0, err[-3000:]
    assert list(runs.rglob("*.ckpt"))
    import yaml

    saved = yaml.safe_load(next(runs.rglob("config.yaml")).read_text())["data"]
    saved = saved.get("init_args", saved)["root"]
    assert (saved == {"nmed-t": str(t), "nmed-h": str(h)}) if form == "mapping" else saved == [str(t), str(h)]

"""Bad data: release files, audio and the prepared cache (refused at prepare / when the cache is opened)."""
from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import soundfile as sf
import torch

from datamodules.synthetic import write_demo
from tooling.cli_cases import ROOT, STAGE, assert_refused, run

def _prepare(world, capsys, root: Path, cache: Path, *extra) -> tuple[int, str]:
    return run(["prepare", *STAGE, "--data.root", root, "--data.cache_dir", cache, *extra], capsys)


def _rewrite_mat(path: Path, edit) -> None:
    m = scipy.io.loadmat(str(path))
    key = next(k for k in m if k.startswith("data"))
    m[key] = edit(np.array(m[key], dtype=np.float64))
    scipy.io.savemat(str(path), {k: v for k, v in m.items() if not k.startswith("__")}, format="5")


def _audio(root: Path, song: int = 21) -> tuple[np.ndarray, int]:
    return sf.read(str(root / "stimuli" / f"song{song}.wav"), dtype="float32")


CONTENT = {
    "silent audio": (lambda r: sf.write(r / "stimuli/song21.wav", np.zeros_like(_audio(r)[0]), _audio(r)[1]),
                     "song21.wav", "silent"),
    "anti-phase stereo": (lambda r: sf.write(r / "stimuli/song21.wav", np.stack([_audio(r)[0], -_audio(r)[0]], 1),
                                             _audio(r)[1]), "song21.wav", "cancel"),
    "audio shorter than the EEG": (lambda r: sf.write(r / "stimuli/song21.wav", _audio(r)[0][: _audio(r)[1] * 5],
                                                      _audio(r)[1]), "song21.wav", "audio is"),
    "missing audio file": (lambda r: (r / "stimuli/song22.wav").unlink(), "stimulus 22", "no audio"),
    "constant recording": (lambda r: _rewrite_mat(r / "song21_Imputed.mat", lambda d: np.full_like(d, 3.0)),
                           "song21_Imputed.mat", "constant"),
    "NaN EEG": (lambda r: _rewrite_mat(r / "song21_Imputed.mat", lambda d: np.where(np.arange(d.shape[1])[None, :, None]
                                                                                    == 7, np.nan, d)),
                "song21_Imputed.mat", "NaN"),
    "250 Hz file": (lambda r: _rewrite_fs(r / "song22_Imputed.mat", 250.0), "song2", "expected_sfreq"),
}


def _rewrite_fs(path: Path, fs: float) -> None:
    m = scipy.io.loadmat(str(path))
    m["fs"] = np.array([[fs]])
    scipy.io.savemat(str(path), {k: v for k, v in m.items() if not k.startswith("__")}, format="5")


@pytest.mark.parametrize("case", list(CONTENT))
def test_bad_data_content_is_refused_at_prepare(world, capsys, tmp_path, case):
    edit, where, what = CONTENT[case]
    root = world.copy_root(tmp_path / "data")
    edit(root)
    code, err = _prepare(world, capsys, root, tmp_path / "cache")
    line = assert_refused(code, err, where)
    assert what in line
    assert not list((tmp_path / "cache").rglob("manifest.json")), "a refused prepare left a cache"


def test_other_sampling_rate_works_when_declared_and_reaches_the_encoder(capsys, tmp_path):
    from chanmusic.cli import lightning_main

    root = write_demo(tmp_path / "data", seed=0, n_subjects=2, duration_s=8.0, songs=[0], sfreq=250.0)
    code, err = _prepare(None, capsys, root, tmp_path / "cache")
    assert_refused(code, err, "song21_Imputed.mat")                  # not silently accepted as 125 Hz
    assert "--data.expected_sfreq" in err
    code, err = _prepare(None, capsys, root, tmp_path / "cache", "--data.expected_sfreq", "250")
    assert code == 0, err
    cli = lightning_main(STAGE + ["--data.root", str(root), "--data.cache_dir", str(tmp_path / "cache"),
                                  "--data.expected_sfreq", "250", "--trainer.logger", "false"], run=False)
    cli.datamodule.setup()
    assert cli.model.encoder.sfreq == 250.0 and cli.model.encoder.n_times == 500
    assert cli.datamodule.cache.manifest["window"] == 500


def test_missing_release_file_is_counted_not_silent(world, capsys, tmp_path):
    code, err = _prepare(world, capsys, world.root, tmp_path / "cache")
    assert code == 0, err
    manifest = json.loads(next((tmp_path / "cache").rglob("manifest.json")).read_text())
    assert manifest["warnings"]["missing_release_files"] == 8           # songs 23..30 of NMED-T are absent
    assert "song23_Imputed.mat" in err and "not found" in err


def test_clap_pickle_bomb_runs_nothing(world, capsys, tmp_path):
    marker = tmp_path / "PWNED"

    class Bomb:
        def __reduce__(self):
            return (os.system, (f"touch {shlex.quote(str(marker))}",))

    bomb = tmp_path / "clap.pt"
    torch.save({"state_dict": {"audio_branch.x": Bomb()}}, bomb)
    code, err = _prepare(world, capsys, world.root, tmp_path / "cache", "--data.clap", bomb)
    line = assert_refused(code, err, str(bomb))
    assert "refused to load" in line and not marker.exists()
    torch.load(bomb, weights_only=False)                                # control: the bomb is live
    assert marker.exists()


@pytest.mark.parametrize("where", ["disk_usage", "fallocate"])
def test_full_disk_is_a_clear_error_not_sigbus(world, capsys, tmp_path, monkeypatch, where):
    import datamodules.cache as cache_mod

    if where == "disk_usage":
        real = shutil.disk_usage
        monkeypatch.setattr(cache_mod.shutil, "disk_usage", lambda p: real(p)._replace(free=1 << 20))
    else:
        def full(fd, offset, length):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(cache_mod.os, "posix_fallocate", full)
    code, err = _prepare(world, capsys, world.root, tmp_path / "cache")
    line = assert_refused(code, err, str(tmp_path / "cache"))
    assert "not enough disk space" in line
    assert not list((tmp_path / "cache").rglob("manifest.json"))


def test_missing_nmedh_member_is_counted_not_silent(capsys, tmp_path):
    import zipfile

    root = write_demo(tmp_path / "h", dataset="nmed-h", seed=0, n_subjects=2, duration_s=8.0, songs=[10])
    z = root / "CleanEEG_aggregatedByStimulus_rev.zip"
    with zipfile.ZipFile(z) as src:
        members = {n: src.read(n) for n in src.namelist()}
    with zipfile.ZipFile(z, "w") as dst:
        for n, data in members.items():
            if not n.endswith("song25_b_Imputed.mat"):
                dst.writestr(n, data)
    code, err = run(["prepare", *STAGE, "--data.root", root, "--data.dataset", "nmed-h", "--data.songs", "[10]", "--data.hearings", "[a, b]",
                     "--data.cache_dir", tmp_path / "cache"], capsys)
    assert code == 0, err
    manifest = json.loads(next((tmp_path / "cache").rglob("manifest.json")).read_text())
    assert manifest["warnings"]["missing_release_files"] == 1
    assert "CleanEEG_aggregatedByStimulus_rev.zip::song25_b" in err


def _tamper_eeg(c: Path) -> None:
    with open(c / "eeg.f32", "r+b") as fh:
        fh.seek(4000)
        fh.write(np.full(8, np.nan, np.float32).tobytes())


def _tamper_npy(name: str, edit) -> callable:
    def go(c: Path) -> None:
        arr = np.load(c / name)
        np.save(c / name, edit(arr.copy()))
    return go


TAMPER = {
    "NaN EEG (same size)": (_tamper_eeg, "eeg.f32"),
    "shifted segments": (_tamper_npy("segments.npy", lambda a: np.concatenate([a[:, :3], a[:, 3:4] + 1, a[:, 4:]], 1)),
                         "segments.npy"),
    "zeroed CLAP": (_tamper_npy("clap.npy", np.zeros_like), "clap.npy"),
    "truncated mel": (lambda c: os.truncate(c / "mel.npy", (c / "mel.npy").stat().st_size // 2), "mel.npy"),
}


@pytest.mark.parametrize("case", list(TAMPER))
def test_edited_cache_is_refused(world, capsys, tmp_path, case):
    edit, name = TAMPER[case]
    shutil.copytree(world.cache, tmp_path / "cache")
    edit(next(p for p in (tmp_path / "cache").glob("nmed-t-*") if p.is_dir()))
    code, err = run(["fit", *world.args(runs=tmp_path / "runs", cache=tmp_path / "cache")], capsys)
    assert_refused(code, err, name)
    assert not list((tmp_path / "runs").rglob("*.ckpt"))


def test_two_prepares_of_one_cache_serialise(tmp_path):
    from datamodules.cache import cache_lock

    path = tmp_path / "cache" / "nmed-t-x"
    code = (f"import time, sys; sys.path.insert(0, {str(ROOT)!r}); from datamodules.cache import cache_lock\n"
            f"with cache_lock({str(path)!r}):\n    print('held', flush=True); time.sleep(1.5)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        import time
        t0 = time.monotonic()
        with cache_lock(path):
            waited = time.monotonic() - t0
        assert waited > 0.5, "the second prepare did not wait for the first"
    finally:
        holder.wait(timeout=30)

"""Issue 30: data and cache refusals that named neither the field nor the fix, or left files behind."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from datamodules.synthetic import write_demo
from tooling.cli_cases import ROOT, STAGE, assert_refused, run


def _prepare(capsys, root, cache, *extra):
    return run(["prepare", *STAGE, "--data.root", root, "--data.cache_dir", cache, *extra], capsys)


def test_unwritable_cache_dir_names_the_field(world, capsys, tmp_path, monkeypatch):
    """The same refusal where permissions cannot be taken away (root): the folder's creation fails with EROFS."""
    import errno
    import pathlib

    real = pathlib.Path.mkdir

    def rofs(self, *a, **k):
        if str(self).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "mkdir", rofs)
    code, err = _prepare(capsys, world.root, tmp_path / "ro")
    line = assert_refused(code, err, "--data.cache_dir")
    assert "Read-only file system" in line and "unexpected" not in line


def test_disk_full_numbers_agree_and_nothing_is_left(world, capsys, tmp_path, monkeypatch):
    import datamodules.cache as cache_mod

    real = shutil.disk_usage
    monkeypatch.setattr(cache_mod.shutil, "disk_usage", lambda p: real(p)._replace(free=4 << 20))
    code, err = _prepare(capsys, world.root, tmp_path / "cache")
    line = assert_refused(code, err, str(tmp_path / "cache"))
    import re

    need = float(re.search(r"\(([\d.]+) MiB needed", line).group(1))
    free = float(re.search(r"([\d.]+) MiB free", line).group(1))
    assert need > free and "reserve" in line
    assert not list((tmp_path / "cache").glob("*.partial")), list((tmp_path / "cache").rglob("*"))


def test_cache_without_checksums_is_refused_with_a_rebuild_hint(world, capsys, tmp_path):
    shutil.copytree(world.cache, tmp_path / "cache")
    c = next(p for p in (tmp_path / "cache").glob("nmed-t-*") if p.is_dir())
    man = json.loads((c / "manifest.json").read_text())
    del man["checksums"]
    (c / "manifest.json").write_text(json.dumps(man))
    code, err = run(["fit", *world.args(runs=tmp_path / "runs", cache=tmp_path / "cache")], capsys)
    line = assert_refused(code, err, str(c))
    assert "no checksums" in line and "chanmusic prepare" in line
    assert not list((tmp_path / "runs").rglob("*.ckpt"))


def test_fifo_is_not_reported_missing(world, capsys, tmp_path):
    fifo = tmp_path / "pipe.ckpt"
    os.mkfifo(fifo)
    code, err = run(["test", *world.args(runs=tmp_path / "runs"), "--ckpt_path", fifo], capsys)
    assert "FIFO" in assert_refused(code, err, "--ckpt_path")
    code, err = run(["fit", "--config", fifo], capsys)
    assert "FIFO" in assert_refused(code, err, "pipe.ckpt")
    root = world.copy_root(tmp_path / "data")
    (root / "stimuli" / "song22.wav").unlink()
    os.mkfifo(root / "stimuli" / "song22.wav")
    code, err = _prepare(capsys, root, tmp_path / "cache")
    assert "not a regular file" in assert_refused(code, err, "song22.wav")


def test_unknown_subject_lists_the_subjects_present(world, capsys, tmp_path):
    code, err = _prepare(capsys, world.root, tmp_path / "cache", "--data.subjects", "[99]")
    line = assert_refused(code, err, "--data.subjects")
    assert "[1, 2]" in line


def test_hearing_split_without_second_hearings_says_what_is_missing(capsys, tmp_path):
    root = write_demo(tmp_path / "h", dataset="nmed-h", seed=0, n_subjects=2, duration_s=8.0, songs=[10, 11],
                      conditions=("orig",))
    z = root / "CleanEEG_aggregatedByStimulus_orig.zip"
    with zipfile.ZipFile(z) as src:
        members = {n: src.read(n) for n in src.namelist()}
    with zipfile.ZipFile(z, "w") as dst:
        for n, data in members.items():
            if "_b_" not in n:
                dst.writestr(n, data)
    code, err = run(["fit", *STAGE, "--data.root", root, "--data.dataset", "nmed-h", "--data.hearings", "[a, b]",
                     "--data.split", "hearing", "--data.cache_dir", tmp_path / "cache", "--trainer.max_epochs", "1",
                     "--trainer.default_root_dir", tmp_path / "runs"], capsys)
    line = assert_refused(code, err, "--data.split")
    assert "['a'] only" in line and "_b" in line


def test_offline_hub_clap_names_the_field(world, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "chanmusic.cli", "prepare", *STAGE, "--data.root", str(world.root),
                        "--data.cache_dir", str(tmp_path / "cache"), "--data.clap", "laion/no-such-clap-here"],
                       capture_output=True, text=True, env=env, timeout=600)
    line = assert_refused(p.returncode, p.stderr, "--data.clap")
    assert "huggingface-cli download laion/no-such-clap-here" in line and "unexpected" not in line
    assert not list((tmp_path / "cache").rglob("manifest.json"))
    assert not list((tmp_path / "cache").glob("*.partial"))


def test_cache_dir_without_file_locks_is_refused_and_an_existing_cache_still_opens(world, capsys, tmp_path,
                                                                                  monkeypatch):
    """flock on a file system without locks (some NFS mounts: ENOLCK) was an "unexpected" OSError."""
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    code, err = _prepare(capsys, world.root, tmp_path / "cache")
    line = assert_refused(code, err, "--data.cache_dir")
    assert "no file locks" in line and "unexpected" not in line
    assert not list((tmp_path / "cache").glob("*/manifest.json"))
    code, err = _prepare(capsys, world.root, world.cache)   # built already: no lock is needed to use it
    assert code == 0, err[-2000:]

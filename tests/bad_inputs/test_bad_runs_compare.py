"""Issue 30: ``compare --dry-run`` parses every run's arguments and checks the data roots before exiting 0."""
from __future__ import annotations

import pytest

from tooling.cli_cases import assert_refused, run

BASE = ["compare", "--dry-run", "--rows", "linear_reference", "--seeds", "1"]


@pytest.mark.parametrize("extra, where", [
    (["--data.windw_s", "1"], "--data.windw_s"),   # a typo after --
    ([], "data.root"),                             # the full profile needs a data folder
])
def test_dry_run_parses_every_runs_arguments(world, capsys, tmp_path, extra, where):
    code, err = run([*BASE, "--out", tmp_path / "out", "--", *extra], capsys)
    line = assert_refused(code, err, where)
    assert "linear_reference/seed0/music" in line
    assert not (tmp_path / "out").exists()


def test_dry_run_checks_the_data_root(world, capsys, tmp_path):
    code, err = run([*BASE, "--out", tmp_path / "out", "--", "--data.root", tmp_path / "nowhere",
                     "--data.dataset", "nmed-t"], capsys)
    assert "is not a folder" in assert_refused(code, err, "--data.root")
    code, err = run([*BASE, "--out", tmp_path / "out", "--", "--data.root", world.root, "--data.dataset", "nmed-t"],
                    capsys)
    assert code == 0, err[-2000:]
    assert not (tmp_path / "out").exists()


def test_output_folder_without_file_locks_is_refused_in_one_line(world, capsys, tmp_path, monkeypatch):
    """Issue 30 (two runners on one folder from two hosts): on a file system without flock (some NFS mounts: ENOLCK)
    the runner's lock ended as an "unexpected" OSError; no runner could be kept out there, so it is refused by name."""
    import errno
    import fcntl
    import os

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    out = tmp_path / "out"
    code, err = run(["compare", "--rows", "linear_reference", "--seeds", "1", "--out", out, "--",
                     "--data.root", world.root, "--data.dataset", "nmed-t"], capsys)
    line = assert_refused(code, err, f"--out {out}")
    assert "no file locks" in line and "unexpected" not in line
    assert not (out / "runs").exists() and not (out / "spec.json").exists()

"""Fault injection (issue 30): the disk fills while ``fit`` writes a checkpoint.

A checkpoint after every optimizer step (three steps of two windows); the write hook sits where Lightning writes
every checkpoint (fsspec's local file, under ``_atomic_save``): from the third ``.ckpt`` write on (step 2's; step 1
wrote its own and ``last.ckpt``) half the bytes are written and then ``OSError(ENOSPC)`` is raised, with no file
name, as a real full disk does. Required: one line
naming the checkpoint, exit 2, every checkpoint left on disk whole, and ``fit --ckpt_path last`` on a disk with room
ends with the weights of a fit that was never interrupted.
"""
from __future__ import annotations

import errno
import os

import torch

from tooling.cli_cases import assert_refused, run
from tooling.step_checkpoints import step_checkpoint_yaml

def _weights(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def test_full_disk_while_fit_writes_a_checkpoint_is_one_line_and_resumes(world, capsys, tmp_path, monkeypatch):
    import fsspec.implementations.local as fs_local

    step_checkpoint_yaml(tmp_path / "steps.yaml", 1)
    two = ["--config", tmp_path / "steps.yaml", "--trainer.max_epochs", "1", "--data.batch_size", "2"]
    code, err = run(["fit", *world.args(runs=tmp_path / "clean"), *two], capsys)
    assert code == 0, err[-2000:]

    real, n = fs_local.LocalFileOpener.write, {"ckpt": 0}

    def filling(self, data, *a, **k):
        if str(self.path).endswith(".ckpt"):
            n["ckpt"] += 1
            if n["ckpt"] >= 3:
                real(self, bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data, *a, **k)

    monkeypatch.setattr(fs_local.LocalFileOpener, "write", filling)
    runs = tmp_path / "runs"
    code, err = run(["fit", *world.args(runs=runs), *two], capsys)
    line = assert_refused(code, err, ".ckpt")
    assert "no space left on device" in line and "--ckpt_path last" in line and "unexpected" not in line
    assert n["ckpt"] >= 3, "the fault was not reached"
    left = sorted(runs.rglob("*.ckpt"))
    assert left, "the first epoch's checkpoints are gone"
    for p in left:  # whole: no half-written checkpoint for a rerun to trip on
        torch.load(p, map_location="cpu", weights_only=True)

    monkeypatch.setattr(fs_local.LocalFileOpener, "write", real)
    code, err = run(["fit", *world.args(runs=runs), *two, "--ckpt_path", "last"], capsys)
    assert code == 0, err[-2000:]
    want, got = _weights(tmp_path / "clean" / "demo" / "version_0"), _weights(runs / "demo" / "version_1")
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want), "the resumed fit ended with other weights"

"""Issue 30: checkpoints of random bytes are called corrupt; an unsafe one gets a tensors-only conversion that works,
never the advice to load it with ``weights_only=False``."""
from __future__ import annotations

import os
import random
import shlex
import subprocess
import sys

import pytest
import torch

from tooling.cli_cases import ROOT, assert_refused, run


# seed 2 of these bytes made the unpickler raise IndexError ("pop from empty list"), seed 20 KeyError and seed 195
# UnicodeDecodeError: "unexpected" lines; os.urandom hit one about one run in twelve
@pytest.mark.parametrize("seed", [0, 2, 20, 195])
def test_random_bytes_checkpoint_is_called_corrupt(world, capsys, tmp_path, seed):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(random.Random(seed).randbytes(6000))
    code, err = run(["test", *world.args(runs=tmp_path / "runs"), "--ckpt_path", junk], capsys)
    line = assert_refused(code, err, "junk.ckpt")
    assert "corrupt" in line and "Python objects" not in line and "weights_only" not in line
    assert not list(tmp_path.rglob("metrics.json"))


def test_any_random_bytes_are_refused_as_corrupt(tmp_path):
    """300 seeded files of random bytes through both readers: every one a CheckpointError, nothing else."""
    from chanmusic.core.checkpoints import CheckpointError, probe_checkpoint, safe_load

    junk = tmp_path / "junk.ckpt"
    for seed in range(300):
        junk.write_bytes(random.Random(seed).randbytes(6000))
        for read in (probe_checkpoint, safe_load):
            with pytest.raises(CheckpointError, match="corrupt"):
                read(junk)


def test_unsafe_checkpoint_gets_a_conversion_that_runs_no_code(world, capsys, tmp_path):
    marker = tmp_path / "PWNED"

    class Bomb:
        def __reduce__(self):
            return (os.system, (f"touch {shlex.quote(str(marker))}",))

    good = torch.load(str(world.ckpts[0]), map_location="cpu", weights_only=True)
    bad = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": good["state_dict"], "extra": Bomb()}, bad)
    code, err = run(["test", *world.args(runs=tmp_path / "runs"), "--ckpt_path", bad], capsys)
    line = assert_refused(code, err, "unsafe.ckpt")
    assert "weights_only=False" not in line and "python -m chanmusic.core.safe_pickle" in line
    cmd = line.split("tensors only: ")[1].split(" (keeps")[0].split()
    subprocess.run([sys.executable, *cmd[1:]], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert not marker.exists()
    out = torch.load(cmd[-1], weights_only=True)
    assert set(out) == set(good["state_dict"]) and all(torch.equal(out[k], good["state_dict"][k]) for k in out)

"""DDP on CPU (gloo, 2 processes) against 1 process on the same global batch; bf16 under DDP.

2 ranks × batch ``B`` must train like 1 process × batch ``2B``: the data module's seeded
``DistributedSampler`` gives both the same windows per step, ``AlignModule`` gathers the embeddings of all
ranks (with gradients) for one InfoNCE over the global batch, DDP averages the gradients, and there is no
dropout. So the per-step losses, the weights after ``STEPS`` steps and the test metrics must agree up to
float summation order. The test split has an odd size on purpose: ``DistributedSampler`` pads it with a
repeated window, which the identification metrics must count once (``n`` = test-set size).

DDP relaunches ``sys.argv`` for rank 1, so it runs in a subprocess (``tests/scripts/ddp_align.py``).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "scripts" / "ddp_align.py"
sys.path.insert(0, str(SCRIPT.parent))
import ddp_align  # noqa: E402

B = 8  # per rank; the 1-process run uses 2B
STEPS = 3
ID_METRICS = ("id50", "song_id", "genre_id", "within_song")


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    return ddp_align.prepare_small_demo(tmp_path_factory.getbasetemp() / "small_demo")


def _args(small_demo, runs: Path, batch_size: int, *extra: str) -> list[str]:
    root, cache = small_demo
    # 2-s hop, 6-s split spans and a 25% test share: 33 test windows (odd, so DistributedSampler pads the last batch)
    return ddp_align.cli_args(root, cache, runs, "--data.stride_s", "2.0", "--data.test_fraction", "0.25",
                              "--data.span_s", "6",
                              "--data.batch_size", str(batch_size),
                              "--trainer.max_epochs", "1", "--trainer.max_steps", str(STEPS),
                              "--trainer.limit_val_batches", "0", *extra)


def _run_ddp(out: Path, args: list[str], timeout: int = 400) -> dict:
    cmd = [sys.executable, str(SCRIPT), str(out), "--", *args,
           "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two ranks on a small machine
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"DDP run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return json.loads((out / "result.json").read_text())


@pytest.mark.slow
def test_ddp_two_ranks_match_one_process_on_the_global_batch(small_demo, tmp_path):
    one = ddp_align.run(tmp_path / "one", _args(small_demo, tmp_path / "runs1", 2 * B))
    two = _run_ddp(tmp_path / "two", _args(small_demo, tmp_path / "runs2", B))
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["global_step"] == two["global_step"] == STEPS

    # the same global batches: the same InfoNCE losses, step for step
    first = abs(one["losses"][0] - two["losses"][0])
    print(f"first-step loss: 1 process {one['losses'][0]:.7f}, 2 processes {two['losses'][0]:.7f}, |diff| {first:.2e}")
    assert first < 1e-5
    assert one["losses"] == pytest.approx(two["losses"], rel=1e-4, abs=1e-5)

    # the same start and the same weights after STEPS AdamW steps. AdamW normalises each coordinate's step, so
    # float-order noise in a near-zero gradient can move that coordinate by up to lr: compare the difference
    # of the two runs with how far training moved the weights, tensor by tensor.
    load = lambda run, f: torch.load(tmp_path / run / f, weights_only=True)  # noqa: E731
    w0, w1, w2 = load("one", "init.pt"), load("one", "weights.pt"), load("two", "weights.pt")
    assert w1.keys() == w2.keys() == load("two", "init.pt").keys()
    for k in w0:
        assert torch.equal(w0[k], load("two", "init.pt")[k]), f"{k}: the runs start from different weights"
    rel = {k: ((w2[k] - w1[k]).norm() / (w1[k] - w0[k]).norm().clamp_min(1e-12)).item() for k in w1}
    print(f"weights after {STEPS} steps: max |diff| {max((w2[k] - w1[k]).abs().max().item() for k in w1):.2e}, "
          f"max ||diff|| / ||update|| {max(rel.values()):.2e}")
    assert max(rel.values()) < 1e-2, rel

    # test metrics over the full test set, each window once, whatever the number of processes
    n_test = one["test_split_size"]
    assert n_test == two["test_split_size"] and n_test % 2 == 1, "an odd test set makes DistributedSampler pad"
    for name in ID_METRICS:
        a, b = one["metrics"][name], two["metrics"][name]
        assert a["n"] == b["n"] == n_test, (name, a, b)
        assert b["chance"] == pytest.approx(a["chance"], abs=1e-6)
        assert b["mean"] == pytest.approx(a["mean"], abs=1.0 / n_test + 1e-6), (name, a, b)


@pytest.mark.slow
def test_ddp_bf16_mixed_runs(small_demo, tmp_path):
    res = _run_ddp(tmp_path / "bf16", _args(small_demo, tmp_path / "runs", B, "--trainer.precision", "bf16-mixed"))
    assert res["world_size"] == 2 and res["global_step"] == STEPS
    assert all(math.isfinite(x) for x in res["losses"])
    for name in ID_METRICS:
        assert res["metrics"][name]["n"] == res["test_split_size"]
    w = torch.load(tmp_path / "bf16" / "weights.pt", weights_only=True)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in w.values())

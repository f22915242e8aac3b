"""Resume and determinism of the alignment fit (CPU, in-process, real ``chanmusic fit`` CLI path).

- Two seeded runs repeat bit for bit: weights and ``metrics.json``.
- A fit stopped mid-epoch (an exception raised after step ``CRASH_AT``, after a step checkpoint was written)
  and resumed with ``--ckpt_path last`` ends with the same weights and metrics as the uninterrupted fit, bit for
  bit. Channel dropout is on, so the augmentation RNG must continue where it stopped, and the training loader
  must skip the batches of the interrupted epoch that were already trained on.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from chanmusic.cli import lightning_main

sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))
import ddp_align  # noqa: E402
from tooling.step_checkpoints import step_checkpoint_yaml  # noqa: E402

EVERY = 3  # a step checkpoint every EVERY optimizer steps
CRASH_AT = 7  # after the checkpoint at step 6, which is mid-epoch (5 steps per epoch)
class CrashAfter(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            raise ddp_align.SimulatedCrash(f"stopped after step {trainer.global_step}")


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    return ddp_align.prepare_small_demo(tmp_path_factory.getbasetemp() / "small_demo")


def _args(small_demo, tmp: Path, runs: Path) -> list[str]:
    ckpt_yaml = step_checkpoint_yaml(tmp / "step_checkpoints.yaml", EVERY)
    root, cache = small_demo
    # 7-s split spans, 17.5% test: 94 train windows, 5 steps of 16 per epoch
    return ddp_align.cli_args(root, cache, runs, "--config", str(ckpt_yaml), "--data.test_fraction", "0.175",
                              "--data.span_s", "7",
                              "--data.batch_size", "16", "--trainer.max_epochs", "3",
                              "--model.init_args.channel_dropout", "0.2")


def _fit_and_test(args: list[str]) -> tuple[dict[str, torch.Tensor], dict, int]:
    cli = lightning_main(["fit", *args])  # the `chanmusic fit` path, before_fit hook included
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    metrics = json.loads((Path(cli.trainer.log_dir) / "metrics.json").read_text())
    return {k: v.detach().clone() for k, v in cli.model.state_dict().items()}, metrics, cli.trainer.global_step


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k}: max |diff| {(a[k] - b[k]).abs().max().item():.3e}"


@pytest.fixture(scope="module")
def uninterrupted(small_demo, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    return _fit_and_test(_args(small_demo, tmp, tmp / "runs"))


@pytest.mark.slow
def test_two_seeded_runs_repeat_bit_for_bit(small_demo, uninterrupted, tmp_path):
    w1, m1, steps1 = uninterrupted
    w2, m2, steps2 = _fit_and_test(_args(small_demo, tmp_path, tmp_path / "runs"))
    assert steps1 == steps2 == 15
    _assert_same(w1, w2)
    assert m1 == m2


@pytest.mark.slow
def test_fit_stopped_mid_epoch_resumes_from_last_to_the_same_end(small_demo, uninterrupted, tmp_path):
    runs = tmp_path / "runs"
    args = _args(small_demo, tmp_path, runs)
    cli = lightning_main(args, run=False)
    cli.trainer.callbacks.append(CrashAfter(CRASH_AT))
    with pytest.raises(ddp_align.SimulatedCrash):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    last = runs / "demo" / "version_0" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)  # plain data: loads without pickle code
    steps_per_epoch = cli.trainer.num_training_batches
    assert ckpt["global_step"] == CRASH_AT // EVERY * EVERY
    assert ckpt["global_step"] % steps_per_epoch != 0, "the checkpoint must be mid-epoch"

    # `--ckpt_path last` finds it although this run logs to a new version folder (chanmusic.cli.before_fit)
    w_resumed, m_resumed, steps = _fit_and_test([*args, "--ckpt_path", "last"])
    w_full, m_full, steps_full = uninterrupted
    assert steps == steps_full
    _assert_same(w_full, w_resumed)
    assert m_resumed == m_full

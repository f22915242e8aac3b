"""Run one alignment fit (+ test) through the ``chanmusic`` CLI and dump what the tests compare.

    python tests/scripts/ddp_align.py OUT_DIR [--fail-at-step K] [--no-test] -- <chanmusic fit args...>

Run it in a subprocess whenever the args say ``--trainer.strategy ddp``: on CPU Lightning relaunches
``sys.executable + sys.argv`` for the other ranks, which must never be the pytest process. Tests may import
:func:`run` for 1-process runs and :func:`prepare_small_demo` / :func:`cli_args` for the shared set-up.

Rank 0 writes into ``OUT_DIR``:

- ``result.json``: ``world_size``, ``losses`` (the training loss of every optimizer step; under DDP that is
  the InfoNCE loss of the *global*, gathered batch, the same on every rank), ``global_step``,
  ``test_split_size``, ``metrics`` (the run's ``metrics.json``) and ``log_dir``;
- ``weights.pt``: the model's ``state_dict`` after fit, ``init.pt`` the one before the first step (plain
  tensors; load with ``weights_only=True``).

Nothing here changes how chanmusic trains: the data module's training sampler is already a seeded
``DistributedSampler`` (``datamodules.sampling``), so ``W`` ranks with batch ``B`` see, step for step, the
windows of one process with batch ``W·B`` and the gathered global batch is the 1-process batch with its rows
permuted (InfoNCE is invariant to a joint permutation of its rows).

``--fail-at-step K`` raises :class:`SimulatedCrash` after optimizer step ``K`` (checkpoints written by then
stay on disk); the exception propagates and the script exits non-zero.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from lightning.pytorch import Callback

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the relaunched ranks start from this file, not from pytest
    sys.path.insert(0, str(ROOT))

DEMO_KW = dict(seed=0, n_subjects=3, duration_s=20.0, songs=[0, 1, 2, 3])


def prepare_small_demo(base: str | Path) -> tuple[Path, Path]:
    """A small demo set (3 subjects × 4 songs × 20 s: 120 two-second windows) and its cache, made once in ``base``.

    Returns ``(root, cache_dir)``. Test modules share it through pytest's session base folder.
    """
    from chanmusic.cli import prepare_main
    from datamodules.synthetic import write_demo

    base = Path(base)
    root, cache = base / "data" / "nmed-t", base / "cache"
    if not (base / "ready").exists():
        write_demo(root, **DEMO_KW)
        prepare_main(["--config", str(ROOT / "experiments/demo.yaml"), "--data.root", str(root),
                      "--data.cache_dir", str(cache)])
        (base / "ready").write_text("ok")
    return root, cache


def cli_args(root: Path, cache: Path, runs: Path, *extra: str) -> list[str]:
    """``chanmusic fit`` arguments: demo + align + linear reference on ``root``, logs and checkpoints in ``runs``."""
    return ["--config", str(ROOT / "experiments/demo.yaml"),
            "--config", str(ROOT / "experiments/align/default.yaml"),
            "--config", str(ROOT / "experiments/encoders/linear_reference.yaml"),
            "--data.root", str(root), "--data.cache_dir", str(cache),
            "--trainer.default_root_dir", str(runs), "--trainer.logger.init_args.save_dir", str(runs),
            "--trainer.enable_progress_bar", "false", *extra]


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


class SimulatedCrash(RuntimeError):
    """Raised on purpose to stop a fit mid-epoch."""


class Recorder(Callback):
    """Keeps the weights at the start, the loss of every optimizer step; optionally crashes after step ``fail_at``."""

    def __init__(self, fail_at: int | None = None):
        self.losses: list[float] = []
        self.fail_at = fail_at
        self.init: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.init = _cpu_state(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss.detach()))
        if self.fail_at is not None and trainer.global_step >= self.fail_at:
            raise SimulatedCrash(f"simulated crash after step {trainer.global_step}")


def run(out_dir: str | Path, args: list[str], fail_at: int | None = None, test: bool = True) -> dict | None:
    """Fit (and test) with the CLI ``args``; rank 0 writes and returns the result (other ranks: ``None``)."""
    from chanmusic.cli import lightning_main

    cli = lightning_main(list(args), run=False)
    trainer, model, dm = cli.trainer, cli.model, cli.datamodule
    rec = Recorder(fail_at)
    trainer.callbacks.append(rec)
    trainer.fit(model, datamodule=dm)
    if test:
        trainer.test(model, datamodule=dm, verbose=False)
    log_dir = trainer.log_dir  # a broadcast under DDP: every rank must ask
    if not trainer.is_global_zero:
        return None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(_cpu_state(model), out_dir / "weights.pt")
    torch.save(rec.init, out_dir / "init.pt")
    metrics_path = Path(log_dir) / "metrics.json"
    result = {
        "world_size": trainer.world_size,
        "losses": rec.losses,
        "global_step": trainer.global_step,
        "test_split_size": int(len(dm.split.test)),
        "metrics": json.loads(metrics_path.read_text()) if test else {},
        "log_dir": str(log_dir),
    }
    (out_dir / "result.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str]) -> None:
    if "--" not in argv or not argv[0] or argv[0].startswith("-"):
        raise SystemExit(__doc__)
    own, args = argv[: argv.index("--")], argv[argv.index("--") + 1:]
    out_dir, fail_at, test = Path(own[0]), None, True
    rest = own[1:]
    while rest:
        flag = rest.pop(0)
        if flag == "--fail-at-step":
            fail_at = int(rest.pop(0))
        elif flag == "--no-test":
            test = False
        else:
            raise SystemExit(f"unknown option {flag}\n{__doc__}")
    run(out_dir, args, fail_at=fail_at, test=test)


if __name__ == "__main__":
    main(sys.argv[1:])

"""What every benchmark shares: the settings of the demo sets, the result ``Row``, the ``Context`` a benchmark
receives (demo sets, data modules, alignment models built through the CLI, facts earlier benchmarks left), a
context manager that silences Lightning while building things, and the alignment-step timer.

A benchmark is a function ``fn(ctx: Context) -> list[Row]``; ``benchmarks/run.py`` lists and runs them.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

os.environ.setdefault("TQDM_DISABLE", "1")  # prepare's progress bars would flood the table
ROOT = Path(__file__).resolve().parent.parent

#: demo sizes: songs × subjects × seconds. 4× = four times the subjects (same songs, so the same music windows).
SONGS = [0, 1, 2, 3, 4]
DURATION_S = 60.0
SUBJECTS = {"1x": 2, "4x": 8}
BATCH_SIZE = 64
RATIO_TARGET = 20.0  # data loading must outpace what a training step consumes by this factor


@dataclass
class Row:
    benchmark: str
    metric: str
    value: float | None
    unit: str = ""
    note: str = ""
    target_met: bool | None = None  # for rows checked against a target; None = no target


@dataclass
class DemoSet:
    name: str
    root: Path
    cache_dir: Path
    eeg_hours: float
    n_windows: int = 0
    eeg_bytes: int = 0


@dataclass
class Context:
    work: Path
    sets: dict[str, DemoSet] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def datamodule(self, name: str = "1x", **kw: Any) -> Any:
        """A set-up ``NMEDDataModule`` on demo set ``name`` (its cache already prepared)."""
        from datamodules.datamodule import NMEDDataModule

        s = self.sets[name]
        dm = NMEDDataModule(str(s.root), cache_dir=str(s.cache_dir), **{**demo_data_settings(), **kw})
        dm.setup("fit")
        return dm

    def align_model(self, encoder_yaml: str | Path, name: str = "1x",
                    extra: list[str] | None = None) -> tuple[Any, dict[str, Any]]:
        """``(model, batch)``: the alignment stage configured by ``experiments/align/default.yaml`` + ``encoder_yaml``
        through the CLI (data facts linked), attached to its (unused) Trainer, and one real training batch."""
        from chanmusic.cli import lightning_main

        s = self.sets[name]
        args = ["--config", str(ROOT / "experiments/demo.yaml"), "--config", str(ROOT / "experiments/align/default.yaml"),
                "--config", str(encoder_yaml), "--data.root", str(s.root), "--data.cache_dir", str(s.cache_dir),
                "--data.batch_size", str(BATCH_SIZE), "--trainer.logger", "false", "--trainer.deterministic", "false",
                "--trainer.enable_checkpointing", "false", "--trainer.callbacks", "[]",
                "--trainer.default_root_dir", str(self.work / "runs"), *(extra or [])]
        with quiet():
            cli = lightning_main(args, run=False)
        model, dm = cli.model, cli.datamodule
        model.trainer = cli.trainer  # single process: the stage's gather is the identity
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
        return model, batch


Benchmark = Callable[[Context], list[Row]]


def demo_data_settings() -> dict[str, Any]:
    """The window settings of ``experiments/demo.yaml``'s ``data`` section (so a data module built here reads the
    cache ``prepare`` built from that file: the window length and hop are part of the cache key), batch
    :data:`BATCH_SIZE`."""
    import yaml

    data = yaml.safe_load((ROOT / "experiments/demo.yaml").read_text()).get("data") or {}
    keep = {k: data[k] for k in ("window_s", "stride_s", "clap") if k in data}
    return {**keep, "batch_size": BATCH_SIZE}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence stdout/stderr and Lightning's info logging (banners, prepare's prints) while building things."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "chanmusic")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def time_train_steps(model: Any, batch: dict[str, Any], budget_s: float = 3.0, min_steps: int = 2,
                     max_steps: int = 20, warmup: int = 1) -> tuple[float, float]:
    """``(samples per second, CPU-seconds per sample)`` of full alignment training steps (forward, InfoNCE,
    backward, AdamW) on one batch (``batch["eeg"]`` ``[B, C, T]``): ``warmup`` untimed steps, then timed steps
    until ``budget_s`` seconds (at least ``min_steps``). CPU-seconds are this process's (all its threads)."""
    import torch

    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        loss = model._step(batch, train=True)[0]  # (loss, ...) for every stage
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while n < max_steps and (n < min_steps or time.perf_counter() - t0 < budget_s):
        step()
        n += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    samples = n * len(batch["eeg"])
    return samples / wall, cpu / samples

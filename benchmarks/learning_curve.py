#!/usr/bin/env python
"""Learning curve of one alignment row: test metrics and the gain over the no-music control vs optimiser steps.

    python benchmarks/learning_curve.py --preset {issue28,recipe} OUT [...]   (a grid: benchmarks/curve_presets.py)
    python benchmarks/learning_curve.py OUT ROW --data ROOT [--every 100] [--steps 1000] [--threads 2]
        [--pretrain CFG,...] [--pretrain-args "..."] -- ALIGN_CFG ... [-- EXTRA_ARGS ...]

Trains the row twice through the CLI — music and no-music control (``--data.control shift``), same seed — saving
a checkpoint every ``--every`` optimiser steps, and the CPU time (user + system of this process, all its
threads) at each; then tests every checkpoint. A pretraining step (``--pretrain``) runs once and is shared by
music and control (pretraining sees EEG only); its CPU time is counted in both. Appends one JSON line per
(run, checkpoint) to ``OUT/curve.jsonl``: ``row, control, step, cpu_s, id50, song_id, within_song, n``. Not part
of ``make bench`` (minutes to hours); ``docs/learning_curve.md`` reports what it measured.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
EXP = ROOT / "experiments"
METRICS = ("id50", "song_id", "within_song")


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def build(out: Path, configs: list[str], data: str, cache: str, name: str, extra: list[str]):
    from chanmusic.cli import lightning_main

    args = []
    for c in ["demo.yaml", *configs]:
        args += ["--config", c if Path(c).is_absolute() else str(EXP / c)]
    args += ["--data.root", data, "--data.cache_dir", cache, "--trainer.default_root_dir", str(out),
             "--trainer.logger.init_args.save_dir", str(out), "--trainer.logger.init_args.name", name,
             "--trainer.enable_progress_bar", "false", *extra]
    return lightning_main(args, run=False)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("row")
    p.add_argument("--data", required=True, help="NMED-T-layout folder")
    p.add_argument("--cache", default=None, help="cache folder (default OUT/../cache)")
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pretrain", default="", help="comma-separated pretraining YAMLs")
    p.add_argument("--pretrain-args", default="", help="extra CLI arguments of the pretraining run")
    p.add_argument("--no-control", action="store_true")
    p.add_argument("--control-only", action="store_true")
    p.add_argument("--test-only", action="store_true", help="test the checkpoints an earlier run left in OUT")
    p.add_argument("--score", default="test",
                   help="windows every checkpoint is scored on: test, val (for choosing a recipe), or both "
                        "(val,test: one training run, each split scored separately)")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--preset"]:  # a named grid of runs (benchmarks/curve_presets.py)
        from benchmarks.curve_presets import main as preset

        return preset(argv[1:])
    first = argv.index("--") if "--" in argv else len(argv)
    a = p.parse_args(argv[:first])
    splits = a.score.split(",")
    if not splits or any(x not in ("test", "val") for x in splits) or len(set(splits)) != len(splits):
        p.error(f"--score {a.score!r}: test, val or val,test")
    rest = argv[first + 1:]
    cut = rest.index("--") if "--" in rest else len(rest)
    configs, extra = rest[:cut], rest[cut + 1:]
    warnings.filterwarnings("ignore")
    import lightning as L
    import torch

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    cache = a.cache or str(out.parent / "cache")
    pre_cpu = 0.0
    if a.pretrain and a.test_only:
        raise SystemExit("learning_curve: --test-only with --pretrain: pass the pretraining checkpoint as "
                         "--model.init_args.init_from in EXTRA_ARGS instead")
    if a.pretrain:
        t0 = cpu_s()
        cli = build(out / "pre", a.pretrain.split(","), a.data, cache, f"{a.row}_pre", a.pretrain_args.split())
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        pre_cpu = cpu_s() - t0
        extra = extra + ["--model.init_args.init_from",
                         str(Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt")]
        print(f"[curve] pretraining: {cli.trainer.global_step} steps, {pre_cpu:.0f} CPU-s", flush=True)

    class CpuAtSave(L.Callback):
        """Writes the CPU time spent so far (pretraining included) into every checkpoint."""

        def __init__(self):
            self.t0 = cpu_s()

        def on_save_checkpoint(self, trainer, pl_module, checkpoint):
            checkpoint["chanmusic_cpu_s"] = pre_cpu + cpu_s() - self.t0

    from chanmusic.core.checkpoints import safe_load

    for control in ([False] if a.no_control else [True] if a.control_only else [False, True]):
        name = a.row + ("_ctrl" if control else "")
        cli = build(out, configs, a.data, cache, name, extra + ["--trainer.max_steps", str(a.steps),
                                                              "--trainer.max_epochs", "-1"]
                    + (["--data.control", "shift"] if control else []))
        if a.test_only:  # the checkpoints of an earlier run of the same command
            ckpt_dir = max((out / name).glob("version_*/checkpoints"), key=lambda q: q.stat().st_mtime)
        else:
            ck = L.pytorch.callbacks.ModelCheckpoint(every_n_train_steps=a.every, save_top_k=-1,
                                                     filename="step{step}", auto_insert_metric_name=False)
            cli.trainer.callbacks.extend([ck, CpuAtSave()])
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
            ckpt_dir = Path(cli.trainer.log_dir) / "checkpoints"
        test_loader = cli.datamodule.test_dataloader
        for path in sorted(ckpt_dir.glob("step*.ckpt"), key=lambda q: int(q.stem[4:])):
            step = int(path.stem[4:])
            spent = safe_load(path).get("chanmusic_cpu_s")
            for split in splits:  # choices are made on validation windows, never on test (docs/model.md)
                cli.datamodule.test_dataloader = cli.datamodule.val_dataloader if split == "val" else test_loader
                log_dir = Path(cli.trainer.log_dir)
                (log_dir / "items.csv").unlink(missing_ok=True)  # never copy an earlier split's items
                cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=str(path), verbose=False)
                m = json.loads((log_dir / "metrics.json").read_text())
                items = out / "items" / name / split / f"step{step}.csv"  # per window: the paired intervals
                items.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(log_dir / "items.csv", items)
                rec = {"row": a.row, "control": control, "step": step, "split": split,
                       "cpu_s": None if spent is None else round(spent, 1), "pretrain_cpu_s": round(pre_cpu, 1),
                       "n": m["song_id"]["n"], "items": str(items.relative_to(out))}
                rec.update({k: round(m[k]["mean"], 4) for k in METRICS if m.get(k)})
                print("[curve]", json.dumps(rec), flush=True)
                with open(out / "curve.jsonl", "a") as f:
                    f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()

"""``chanmusic robustness``: its arguments and the run over every ``--ckpt`` (see the package docstring); the figure
is drawn by the report (:func:`chanmusic.report.plots.removal_curves`)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from chanmusic.evaluation.robustness.evaluate import evaluate_run, load_aligned, load_test_batches, write_run_metrics
from chanmusic.evaluation.robustness.outputs import curves, table, write_csv
from chanmusic.evaluation.robustness.removal import MODES

log = logging.getLogger("chanmusic")

DEFAULT_K = (0, 8, 16, 32, 64, 96)


def _int_list(s: str) -> list[int]:
    return [int(v) for v in s.replace(" ", "").split(",") if v]


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        prog="chanmusic robustness",
        description="50-way identification of trained alignment runs with k electrodes removed at test time "
                    "(random electrodes or whole regions, several seeds); CSV + PNG, and id50_k{k} in each run's "
                    "metrics.json. Extra --data.* / --model.* arguments are passed to every run's config.")
    p.add_argument("--ckpt", nargs="+", action="extend", required=True,
                   help="checkpoint file(s) or run folder(s); several = one plot comparing the encoders")
    p.add_argument("--config", nargs="+", action="extend", default=[],
                   help="config.yaml per --ckpt (default: the run folder's config.yaml)")
    p.add_argument("--label", nargs="+", action="extend", default=[], help="legend label per --ckpt")
    p.add_argument("--k", type=_int_list, default=list(DEFAULT_K), help="electrodes removed, comma-separated")
    p.add_argument("--mode", default="random,region", help="comma-separated: random, region")
    p.add_argument("--seeds", type=int, default=3, help="removal draws per k and mode")
    p.add_argument("--out", default=None, help="output folder (default: RUN/robustness for one run, else ./robustness)")
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto")
    p.add_argument("--no-metrics-json", action="store_true", help="don't write id50_k* into the runs' metrics.json")
    args, extra = p.parse_known_args(list(argv))
    bad = [a for a in extra if a.startswith("-") and not a.startswith(("--data.", "--model.", "--seed_everything"))]
    if bad:
        p.error(f"unrecognized arguments: {' '.join(bad)}")
    args.mode = [m for m in args.mode.replace(" ", "").split(",") if m]
    for m in args.mode:
        if m not in MODES:
            p.error(f"--mode {m!r}: choose from {MODES}")
    for name in ("config", "label"):
        if getattr(args, name) and len(getattr(args, name)) != len(args.ckpt):
            p.error(f"--{name}: give one per --ckpt ({len(args.ckpt)}) or none")
    if args.seeds < 1:
        p.error("--seeds must be >= 1")
    return args, extra


def run(argv: Sequence[str]) -> dict[str, Any]:
    """Everything ``main`` does; returns ``{"rows", "csv", "png", "metrics"}``."""
    args, overrides = parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    configs = args.config or [None] * len(args.ckpt)
    runs, rows, data_cache, metrics = [], [], {}, {}
    for i, (spec, cfg) in enumerate(zip(args.ckpt, configs)):
        grad = torch.is_grad_enabled()
        r = load_aligned(spec, cfg, overrides, device)
        torch.set_grad_enabled(grad)
        if args.label:
            r.label = args.label[i]
        elif any(o.label == r.label for o in runs):
            r.label = f"{r.label} [{r.run_dir.name}]"
        if runs and list(r.dm.ch_names) != list(runs[0].dm.ch_names):
            log.warning("%s has other channels than %s: removals match by index, not by name", r.run_dir,
                        runs[0].run_dir)
        key = json.dumps(r.dm.prepare_settings() | {"split": vars(r.dm.split_cfg), "control": r.dm.control,
                                                    "center": r.dm.clap_center}, sort_keys=True, default=str)
        if key not in data_cache:  # runs on the same data and split share the test batches
            data_cache[key] = load_test_batches(r.dm)
        log.info("robustness: %s (%s, %s)", r.label, r.run_dir, r.ckpt.name)
        r.rows = evaluate_run(r, args.k, args.mode, args.seeds, device, data_cache[key])
        rows += r.rows
        if not args.no_metrics_json:
            metrics[str(r.run_dir)] = str(write_run_metrics(r, r.rows))
        runs.append(r)
    out = Path(args.out) if args.out else (runs[0].run_dir / "robustness" if len(runs) == 1 else Path("robustness"))
    csv_path = write_csv(rows, out / "robustness.csv")
    from chanmusic.report.plots import removal_curves

    png = removal_curves(**curves(rows), path=out / "robustness.png",
                         title="50-way identification with electrodes removed at test time")
    print(table(rows))
    print(f"[robustness] {csv_path}\n[robustness] {png}")
    return {"rows": rows, "csv": csv_path, "png": png, "metrics": metrics}


def main(argv: Sequence[str] | None = None) -> None:
    run(sys.argv[1:] if argv is None else argv)

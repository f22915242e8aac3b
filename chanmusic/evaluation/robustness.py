"""``chanmusic robustness``: 50-way identification as electrodes are removed at test time.

    chanmusic robustness --ckpt RUN [RUN2 ...] [--config RUN/config.yaml ...] [--k 0,8,16,32,64,96]
                         [--mode random,region] [--seeds 3] [--out DIR] [--data.* overrides]

Each ``--ckpt`` is a trained alignment run: a checkpoint file (its run folder is the folder above
``checkpoints/``) or the run folder itself (then its best checkpoint: ``fit_done.json``'s, else the newest
non-``last`` one, else ``last.ckpt``). The run's saved ``config.yaml`` (or ``--config``) rebuilds the model and
the data; weights load with ``weights_only=True`` and every key checked.

For every ``k`` (electrodes removed), ``mode`` and seed, the same electrodes are marked absent
(``channel_mask`` False) in every test window and for every encoder:

- ``random``: ``k`` electrodes drawn uniformly;
- ``region``: the ``k`` electrodes nearest to a random centre electrode (MNE montage positions of the data's
  channel names) — a whole missing region of the cap.

Per (mode, seed) one removal order is drawn, and ``k`` removes its first ``k`` electrodes, so the removed sets
are nested in ``k`` (the curve of one seed is one cap losing more and more electrodes). Removals depend only on
the channel names, mode and seed, never on the encoder. What each encoder does with a mask is its own business
(the channel-oriented encoder removes the tokens; baselines zero-fill; see their docstrings).

Writes ``OUT/robustness.csv`` (one row per encoder × mode × k × seed: the run's id50 mean/std over its distractor
repeats, chance, n windows, electrodes kept) and ``OUT/robustness.png`` (id50 vs k for all encoders, mean ± std
over seeds, one panel per mode, chance dashed), and merges into each run's ``metrics.json`` (the same merge as
``AlignModule.write_metrics``) ``id50_k{k}`` (random mode) and ``id50_k{k}_region``: mean and std over seeds,
``n`` test windows, ``chance``, ``repeats`` = number of seeds (what the std is over).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from encoders.montage import DEFAULT_MONTAGE, distance_matrix, resolve_positions

log = logging.getLogger("chanmusic")

DEFAULT_K = (0, 8, 16, 32, 64, 96)
MODES = ("random", "region")
CONFIG_KEYS = ("seed_everything", "trainer", "model", "data", "optimizer", "lr_scheduler")
CSV_FIELDS = ("encoder", "k", "mode", "seed", "id50_mean", "id50_std", "chance", "n", "n_kept", "run", "ckpt")


# ------------------------------------------------------------------------------------------------ removals
def removal_order(ch_names: Sequence[str], mode: str, seed: int, montage: str = DEFAULT_MONTAGE,
                  positions: np.ndarray | None = None) -> np.ndarray:
    """``[C]`` channel indices in removal order for ``(mode, seed)``: removing ``k`` = its first ``k``.

    ``random``: a seeded permutation. ``region``: a seeded random centre electrode, then every electrode by
    distance to it (nearest first, ties by index). Depends only on the channel names (or ``positions``),
    ``mode`` and ``seed``.
    """
    if mode not in MODES:
        raise ValueError(f"--mode: {mode!r} is not one of {MODES}")
    C = len(ch_names)
    rng = np.random.default_rng([int(seed), MODES.index(mode)])
    if mode == "random":
        return rng.permutation(C)
    pos = resolve_positions(C, list(ch_names), positions, montage)
    centre = int(rng.integers(C))
    return np.argsort(distance_matrix(pos)[centre], kind="stable")


def kept_channels(order: np.ndarray, k: int) -> torch.Tensor:
    """``[C]`` bool, False for the first ``k`` channels of ``order``."""
    keep = torch.ones(len(order), dtype=torch.bool)
    keep[torch.as_tensor(order[:k], dtype=torch.long)] = False
    return keep


# ------------------------------------------------------------------------------------------------ runs
@dataclass
class Run:
    label: str
    run_dir: Path
    ckpt: Path
    config: Path
    model: Any = None
    dm: Any = None
    trainer: Any = None
    rows: list[dict] = field(default_factory=list)


def resolve_run(spec: str | Path, config: str | Path | None = None) -> tuple[Path, Path, Path]:
    """``(run_dir, checkpoint, config)`` of a ``--ckpt`` argument (checkpoint file or run folder)."""
    p = Path(spec)
    if p.is_dir():
        run_dir = p
        done = p / "fit_done.json"
        ck = json.loads(done.read_text()).get("checkpoint") if done.is_file() else None
        if not ck:
            cks = sorted((p / "checkpoints").glob("*.ckpt"), key=lambda q: q.stat().st_mtime, reverse=True)
            best = [q for q in cks if not q.name.startswith("last")]
            ck = str((best or cks or [None])[0] or "")
        if not ck:
            raise FileNotFoundError(f"{p}: no checkpoints/*.ckpt (is this a finished run folder?)")
        ckpt = Path(ck)
    elif p.is_file():
        ckpt = p
        run_dir = p.parent.parent if p.parent.name == "checkpoints" else p.parent
    else:
        raise FileNotFoundError(f"--ckpt {p}: no such checkpoint or run folder")
    cfg = Path(config) if config else run_dir / "config.yaml"
    if not cfg.is_file():
        raise FileNotFoundError(f"{cfg}: no saved config (pass --config for this checkpoint)")
    return run_dir, ckpt, cfg


def load_run(spec: str | Path, config: str | Path | None = None, overrides: Sequence[str] = (),
             device: str = "cpu") -> Run:
    """Model (weights from the checkpoint, eval mode) and data module of a trained run."""
    import yaml

    from chanmusic.stages.encoder_init import load_strict, safe_load, state_dict_of
    from chanmusic.cli import lightning_main

    run_dir, ckpt, cfg = resolve_run(spec, config)
    saved = yaml.safe_load(cfg.read_text()) or {}
    # a config saved by `fit` also holds the subcommand's own keys (ckpt_path): keep what run=False accepts
    saved = {k: v for k, v in saved.items() if k in CONFIG_KEYS}
    args = ["--config", yaml.safe_dump(saved),
            # evaluation needs no logger, callbacks or the training devices; log_dir = the run folder
            "--trainer.logger", "false", "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false",
            "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.num_nodes", "1",
            "--trainer.strategy", "auto", "--trainer.default_root_dir", str(run_dir)]
    init = (saved.get("model") or {}).get("init_args") or {}
    if init.get("init_encoder_from"):  # the checkpoint holds every weight: the pretraining file is not needed
        args += ["--model.init_args.init_encoder_from", "null"]
    argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI reads `args` only
    try:
        cli = lightning_main(args + list(overrides), run=False)
    finally:
        sys.argv = argv
    model = cli.model
    if not hasattr(model, "embed"):
        raise TypeError(f"{ckpt}: {type(model).__name__} has no embed(eeg, channel_mask): not an alignment run")
    load_strict(model, state_dict_of(safe_load(ckpt)), str(ckpt))
    model.eval().to(device)
    enc = model.encoder
    label = type(enc).__name__
    if getattr(enc, "channel_embedding", "lookup") != "lookup":
        label += f" ({enc.channel_embedding})"
    return Run(label, run_dir, ckpt, cfg, model, cli.datamodule, cli.trainer)


def load_test_batches(dm) -> list[dict[str, torch.Tensor]]:
    """The test split's batches (CPU), read once and reused for every removal."""
    dm.prepare_data()
    dm.setup("test")
    return [{k: v for k, v in b.items() if isinstance(v, torch.Tensor)} for b in dm.test_dataloader()]


@torch.inference_mode()
def identification(model, batches: Sequence[dict], keep: torch.Tensor | None, device: str = "cpu") -> dict[str, float]:
    """id50 (the run's own ``id_repeats`` / ``id_seed``) with the channels where ``keep`` is False absent."""
    from chanmusic.stages.align import ID_METRICS
    from chanmusic.evaluation.metrics import Identification

    kind, n_way = ID_METRICS["id50"]
    hp = getattr(model, "hparams", {})
    metric = Identification(n_way, kind, int(hp.get("id_repeats", 10)), int(hp.get("id_seed", 0)))
    for b in batches:
        mask = b["channel_mask"].bool()
        if keep is not None:
            mask = mask & keep[None, :]
        emb = model.embed(b["eeg"].to(device), mask.to(device)).float().cpu()
        metric.update(emb, b["clap"], b["music"], b["song"], b["genre"], b["stimulus"], b["start"], b["length"],
                      b["segment"])
    return {k: float(v) for k, v in metric.compute().items()}


def evaluate_run(run: Run, ks: Sequence[int], modes: Sequence[str], seeds: int, device: str = "cpu",
                 batches: list | None = None) -> list[dict]:
    """One row per mode × k × seed (k = 0 is evaluated once: nothing is removed whatever the seed)."""
    batches = batches if batches is not None else load_test_batches(run.dm)
    ch_names = list(run.dm.ch_names)
    C = len(ch_names)
    bad = [k for k in ks if not 0 <= k < C]
    if bad:
        raise ValueError(f"--k {bad}: must be in [0, {C}) for {C} channels")
    intact = None
    rows = []
    for mode in modes:
        for seed in range(seeds):
            order = removal_order(ch_names, mode, seed)
            for k in ks:
                t0 = time.time()
                if k == 0:
                    intact = intact or identification(run.model, batches, None, device)
                    r = intact
                else:
                    r = identification(run.model, batches, kept_channels(order, k), device)
                rows.append({"encoder": run.label, "k": int(k), "mode": mode, "seed": seed, "id50_mean": r["mean"],
                             "id50_std": r["std"], "chance": r["chance"], "n": int(r["n"]), "n_kept": C - int(k),
                             "run": str(run.run_dir), "ckpt": str(run.ckpt)})
                log.info("robustness %s %s k=%d seed=%d: id50 %.3f (%.1f s)", run.label, mode, k, seed, r["mean"],
                         time.time() - t0)
    return rows


# ------------------------------------------------------------------------------------------------ outputs
def summarize(rows: Sequence[dict]) -> dict[tuple[str, str, int], dict[str, float]]:
    """``(encoder, mode, k) -> {mean, std, n_seeds, chance, n}`` over seeds (std ddof=0)."""
    groups: dict[tuple[str, str, int], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["encoder"], r["mode"], int(r["k"])), []).append(r)
    out = {}
    for key, rs in groups.items():
        v = np.array([r["id50_mean"] for r in rs], dtype=np.float64)
        out[key] = {"mean": float(v.mean()), "std": float(v.std()), "n_seeds": len(v),
                    "chance": float(np.mean([r["chance"] for r in rs])), "n": int(rs[0]["n"])}
    return out


def metrics_entries(rows: Sequence[dict]) -> dict[str, dict[str, Any]]:
    """``metrics.json`` entries of one run: ``id50_k{k}`` (random) and ``id50_k{k}_region``."""
    out = {}
    for (_, mode, k), s in sorted(summarize(rows).items(), key=lambda kv: (kv[0][1], kv[0][2])):
        if k == 0 and mode != "random":
            continue  # nothing removed: the same number as id50_k0
        name = f"id50_k{k}" + ("" if mode == "random" else f"_{mode}")
        out[name] = {"mean": s["mean"], "std": s["std"], "n": s["n"], "chance": s["chance"], "repeats": s["n_seeds"],
                     "mode": mode, "k": k}
    return out


def write_run_metrics(run: Run, rows: Sequence[dict]) -> Path | None:
    """Merge this run's ``id50_k*`` entries into ``RUN/metrics.json`` through ``AlignModule.write_metrics``."""
    model = run.model
    if not hasattr(model, "write_metrics"):
        log.warning("%s: %s has no write_metrics; metrics.json not updated", run.run_dir, type(model).__name__)
        return None
    model.trainer = run.trainer  # its log_dir is the run folder (load_run: no logger, default_root_dir = run)
    try:
        return model.write_metrics(metrics_entries(rows))
    finally:
        model.trainer = None


def write_csv(rows: Sequence[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in CSV_FIELDS})
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("k", "seed", "n", "n_kept"):
            r[k] = int(r[k])
        for k in ("id50_mean", "id50_std", "chance"):
            r[k] = float(r[k])
    return rows


def plot_curves(rows: Sequence[dict], path: Path, title: str = "") -> Path:
    """id50 vs electrodes removed, one line per encoder (mean ± std over seeds), one panel per mode."""
    from chanmusic.report.plots import _save  # sets the Agg backend before pyplot loads

    import matplotlib.pyplot as plt

    summ = summarize(rows)
    encoders = list(dict.fromkeys(r["encoder"] for r in rows))
    modes = [m for m in MODES if any(r["mode"] == m for r in rows)]
    n_ch = max(r["n_kept"] + r["k"] for r in rows)
    fig, axes = plt.subplots(1, len(modes), figsize=(4.6 * len(modes), 3.6), sharey=True, squeeze=False)
    for ax, mode in zip(axes[0], modes):
        for i, enc in enumerate(encoders):
            pts = sorted((k, s) for (e, m, k), s in summ.items() if e == enc and m == mode)
            if not pts:
                continue
            k = np.array([p[0] for p in pts])
            mean = np.array([p[1]["mean"] for p in pts])
            std = np.array([p[1]["std"] for p in pts])
            color = f"C{i}"
            ax.plot(k, mean, marker="o", ms=4, color=color, label=enc)
            ax.fill_between(k, mean - std, mean + std, color=color, alpha=0.2, lw=0)
        chance = np.mean([s["chance"] for (e, m, k), s in summ.items() if m == mode])
        ax.axhline(chance, color="k", ls="--", lw=1, label="chance")
        ax.set_xlabel(f"electrodes removed (of {n_ch})")
        ax.set_title(f"{mode} removal" if mode == "random" else "whole regions removed", fontsize=10)
        ax.spines[["top", "right"]].set_visible(False)
    n_seeds = max(s["n_seeds"] for s in summ.values())
    axes[0][0].set_ylabel(f"50-way identification\n(mean ± std over {n_seeds} seeds)")
    axes[0][0].legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def table(rows: Sequence[dict]) -> str:
    """Plain-text summary: id50 mean ± std over seeds per encoder, mode and k."""
    summ = summarize(rows)
    ks = sorted({k for (_, _, k) in summ})
    lines = ["encoder | mode | " + " | ".join(f"k={k}" for k in ks)]
    for enc in dict.fromkeys(r["encoder"] for r in rows):
        for mode in MODES:
            cells = [summ.get((enc, mode, k)) for k in ks]
            if any(cells):
                lines.append(f"{enc} | {mode} | " + " | ".join(
                    f"{c['mean']:.3f}±{c['std']:.3f}" if c else "—" for c in cells))
    chance = np.mean([s["chance"] for s in summ.values()])
    return "\n".join(lines) + f"\n(chance {chance:.3f})"


# ------------------------------------------------------------------------------------------------ CLI
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
        r = load_run(spec, cfg, overrides, device)
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
    png = plot_curves(rows, out / "robustness.png", "50-way identification with electrodes removed at test time")
    print(table(rows))
    print(f"[robustness] {csv_path}\n[robustness] {png}")
    return {"rows": rows, "csv": csv_path, "png": png, "metrics": metrics}


def main(argv: Sequence[str] | None = None) -> None:
    run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()

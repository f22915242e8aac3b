"""id50 of trained alignment runs with electrodes absent: loading the runs, evaluating every removal, and the
``id50_k{k}`` entries merged into each run's ``metrics.json`` (through :mod:`chanmusic.results.metrics_file`)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from chanmusic.evaluation.robustness.removal import kept_channels, removal_order
from chanmusic.results.metrics_file import METRICS_FILE, merge_metrics
from chanmusic.results.registry import REGISTRY
from chanmusic.results.runs import load_run

log = logging.getLogger("chanmusic")

BASE_METRIC = "id50"  #: the registry entry measured with electrodes removed


@dataclass
class Run:
    """A loaded alignment run under evaluation: its legend ``label``, files, model, data module, trainer, rows."""

    label: str
    run_dir: Path
    ckpt: Path
    config: Path
    model: Any = None
    dm: Any = None
    trainer: Any = None
    rows: list[dict] = field(default_factory=list)


def load_aligned(spec: str | Path, config: str | Path | None = None, overrides: Sequence[str] = (),
                 device: str = "cpu") -> Run:
    """An alignment run (``chanmusic.results.runs.load_run``: weights from the checkpoint, eval mode, its data
    module), labelled by its encoder class (and channel embedding when not ``lookup``)."""
    r = load_run(spec, config, overrides, device)
    model = r.model
    if not hasattr(model, "embed"):
        raise TypeError(f"{r.ckpt}: {type(model).__name__} has no embed(eeg, channel_mask): not an alignment run")
    enc = model.encoder
    label = type(enc).__name__
    if getattr(enc, "channel_embedding", "lookup") != "lookup":
        label += f" ({enc.channel_embedding})"
    return Run(label, r.run_dir, r.ckpt, r.config, model, r.datamodule, r.trainer)


def load_test_batches(dm) -> list[dict[str, torch.Tensor]]:
    """The test split's batches (CPU), read once and reused for every removal."""
    dm.prepare_data()
    dm.setup("test")
    return [{k: v for k, v in b.items() if isinstance(v, torch.Tensor)} for b in dm.test_dataloader()]


@torch.inference_mode()
def identification(model, batches: Sequence[dict], keep: torch.Tensor | None, device: str = "cpu") -> dict[str, float]:
    """id50 (the registry's entry, with the run's own ``id_repeats`` / ``id_seed``) with the channels where ``keep``
    is False absent: ``{"mean", "std", "chance", "n"}``."""
    spec = REGISTRY[BASE_METRIC]
    metric = spec.build(getattr(model, "hparams", {}))
    for b in batches:
        mask = b["channel_mask"].bool()
        if keep is not None:
            mask = mask & keep[None, :]
        emb = model.embed(b["eeg"].to(device), mask.to(device)).float().cpu()
        spec.update(metric, emb, b)
    r = metric.compute()
    return {k: float(r[k]) for k in ("mean", "std", "chance", "n")}


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


def metric_name(k: int, mode: str) -> str:
    """``id50_k{k}`` (random removals) or ``id50_k{k}_{mode}``: named after the registry entry they vary."""
    return f"{BASE_METRIC}_k{k}" + ("" if mode == "random" else f"_{mode}")


def metrics_entries(rows: Sequence[dict]) -> dict[str, dict[str, Any]]:
    """``metrics.json`` entries of one run: ``id50_k{k}`` (random) and ``id50_k{k}_region``."""
    out = {}
    for (_, mode, k), s in sorted(summarize(rows).items(), key=lambda kv: (kv[0][1], kv[0][2])):
        if k == 0 and mode != "random":
            continue  # nothing removed: the same number as id50_k0
        name = metric_name(k, mode)
        out[name] = {"mean": s["mean"], "std": s["std"], "n": s["n"], "chance": s["chance"], "repeats": s["n_seeds"],
                     "mode": mode, "k": k}
    return out


def write_run_metrics(run: Run, rows: Sequence[dict]) -> Path:
    """Merge this run's ``id50_k*`` entries into ``RUN/metrics.json`` (the one writer, beside the run's own test
    metrics)."""
    return merge_metrics(run.run_dir / METRICS_FILE, metrics_entries(rows))

"""id50 of trained alignment runs with electrodes absent: loading the runs, evaluating every removal, and the
``id50_k{k}`` entries merged into each run's ``metrics.json``."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from chanmusic.evaluation.robustness.removal import kept_channels, removal_order
from chanmusic.evaluation.runs import load_run

log = logging.getLogger("chanmusic")


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
    """An alignment run (``chanmusic.evaluation.runs.load_run``: weights from the checkpoint, eval mode, its data
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


"""Collapse monitor for self-distillation pretraining (``chanmusic.stages.pretrain.PretrainModule``).

Division of labour (our decision): the EMA teacher update lives *inside* ``PretrainModule``
(``update_teacher``, called from ``on_train_batch_end``) so pretraining is correct with or without any
callback; this callback only watches for collapse and warns. ``PretrainModule`` adds it itself through
``configure_callbacks`` (``collapse_monitor: true``), so stage YAMLs need not list it.

Collapse signs (DINO §5.3): the teacher's per-sample output entropy ``H(P_t)`` goes to 0 (one dimension
dominates: sharpening wins) or to ``log K`` (uniform output: centring wins), and KL(teacher‖student) → 0.
See :class:`CollapseMonitor` for which entropy detects which.
"""
from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn


class CollapseMonitor(L.Callback):
    """Warn when the teacher's outputs collapse to one dimension or to the uniform distribution.

    Two entropies of the teacher distribution ``P_t`` over ``K = out_dim`` prototypes, as fractions of
    ``log K``:

    - per-sample entropy ``H(P_t)`` (mean over the batch): → 1 under uniform collapse;
    - batch entropy ``H(mean P_t)``: → 0 under one-dimension collapse (every sample on the same prototype).

    A teacher that is sharp *per sample* but spread over prototypes *across samples* is the healthy
    goal, so the one-dimension test uses the batch entropy, not the per-sample one (their difference, the
    prototype/sample mutual information, is logged by the module as ``train/teacher_mi``).

    Reads ``pl_module.collapse_stats`` (floats ``teacher_entropy``, ``teacher_batch_entropy``, ``kl``, set by
    each training step) or, failing that, ``trainer.callback_metrics['train/...']``; ``K`` from
    ``pl_module.hparams.out_dim``.

    Args:
        low: warn when batch entropy ``/ log K < low`` (one-dimension collapse).
        high: warn when per-sample entropy ``/ log K > high`` (uniform collapse).
        patience: consecutive training steps the condition must hold before warning (early steps of a fresh
            random head sit near the uniform end and are not collapse).
        every_n_steps: check interval.

    State: ``status`` (``"ok"``, ``"one-dimension"`` or ``"uniform"``), ``history`` (list of
    ``(step, H / log K, H_batch / log K, kl)``), ``warnings`` (messages issued). Logs ``monitor/entropy_ratio`` and
    ``monitor/collapsed`` (0/1).
    """

    def __init__(self, low: float = 0.05, high: float = 0.98, patience: int = 20, every_n_steps: int = 1):
        super().__init__()
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(f"need 0 <= low < high <= 1, got {low}, {high}")
        self.low, self.high, self.patience, self.every_n_steps = low, high, patience, max(1, every_n_steps)
        self.status = "ok"
        self.history: list[tuple[int, float, float, float]] = []
        self.warnings: list[str] = []
        self._run = 0
        self._kind = "ok"

    def _stats(self, trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[float, float, float] | None:
        stats = getattr(pl_module, "collapse_stats", None)
        if not stats or "teacher_entropy" not in stats:
            metrics = trainer.callback_metrics
            stats = {k: float(metrics[f"train/{k}"]) for k in ("teacher_entropy", "teacher_batch_entropy", "kl")
                     if f"train/{k}" in metrics}
        if "teacher_entropy" not in stats:
            return None
        h = float(stats["teacher_entropy"])
        return h, float(stats.get("teacher_batch_entropy", h)), float(stats.get("kl", math.nan))

    def classify(self, sample_ratio: float, batch_ratio: float) -> str:
        """``"uniform"``, ``"one-dimension"`` or ``"ok"`` for entropies given as fractions of ``log K``."""
        if sample_ratio > self.high:
            return "uniform"
        if batch_ratio < self.low:
            return "one-dimension"
        return "ok"

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step % self.every_n_steps:
            return
        stats = self._stats(trainer, pl_module)
        out_dim = getattr(pl_module, "hparams", {}).get("out_dim")
        if stats is None or not out_dim or out_dim < 2:
            return
        h, hb, kl = stats
        ratio, batch_ratio = h / math.log(out_dim), hb / math.log(out_dim)
        self.history.append((step, ratio, batch_ratio, kl))
        kind = self.classify(ratio, batch_ratio)
        self._run = self._run + 1 if kind == self._kind and kind != "ok" else (1 if kind != "ok" else 0)
        self._kind = kind
        collapsed = kind != "ok" and self._run >= self.patience
        if collapsed and self.status != kind:
            msg = (f"pretraining collapse suspected at step {step} ({kind}, {self._run} steps): teacher entropy "
                   f"per sample {ratio:.3f}·log({out_dim}), over the batch {batch_ratio:.3f}·log({out_dim}); "
                   f"KL(teacher‖student) {kl:.4f}. "
                   + ("Raise the teacher temperature / centre momentum or lower the learning rate."
                      if kind == "one-dimension" else
                      "Lower the teacher temperature, check the learning rate, or train longer before judging."))
            rank_zero_warn(msg)
            self.warnings.append(msg)
        if collapsed:
            self.status = kind
        elif kind == "ok":
            self.status = "ok"
        pl_module.log("monitor/entropy_ratio", ratio, on_step=True, on_epoch=False)
        pl_module.log("monitor/batch_entropy_ratio", batch_ratio, on_step=True, on_epoch=False)
        pl_module.log("monitor/collapsed", float(collapsed), on_step=True, on_epoch=False)

    def state_dict(self) -> dict[str, Any]:
        return {"status": self.status, "history": self.history[-1000:]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.status = state_dict.get("status", "ok")
        self.history = list(state_dict.get("history", []))

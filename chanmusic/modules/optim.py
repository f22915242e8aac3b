"""The one optimiser recipe of the training stages: AdamW over decay / no-decay parameter groups, with a linear
warmup then cosine decay of the learning rate, stepped once per optimiser step.

Used by ``chanmusic.stages.pretrain`` and ``chanmusic.stages.align``. (lightly's ``CosineWarmupScheduler`` is not
used: its cosine runs over ``max_steps - 1`` steps, so its learning rates differ from these.)
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn

__all__ = ["param_groups", "total_steps", "warmup_cosine", "adamw_warmup_cosine"]


def param_groups(params: Iterable[nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups of the trainable (``requires_grad``) ``params``, in their order: weight decay
    ``weight_decay`` on tensors with ``dim() >= 2`` (weight matrices, kernels, embeddings), none on the rest
    (biases, norm scales, scalars such as a logit scale)."""
    params = [p for p in params if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def total_steps(module: Any) -> int:
    """Optimiser steps of the run: the trainer's ``estimated_stepping_batches`` (at least 1); 1 without a trainer."""
    return max(1, int(module.trainer.estimated_stepping_batches)) if module._trainer is not None else 1


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total: int,
                  min_lr_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning-rate factor per step: ``(step + 1) / warm`` for the first ``warm = min(warmup_steps, total - 1)``
    steps (none when ``total`` is 1), then a half cosine from 1 to ``min_lr_ratio`` over the remaining
    ``total - warm`` steps, ``min_lr_ratio`` after them."""
    warm = min(warmup_steps, total - 1) if total > 1 else 0
    floor = min_lr_ratio

    def schedule(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def adamw_warmup_cosine(params: Iterable[nn.Parameter], lr: float, weight_decay: float, warmup_steps: int,
                        total: int, min_lr_ratio: float = 0.0) -> dict[str, Any]:
    """``configure_optimizers``' return value: AdamW over :func:`param_groups` with :func:`warmup_cosine`,
    stepped every optimiser step (``interval="step"``)."""
    opt = torch.optim.AdamW(param_groups(params, weight_decay), lr=lr)
    sched = warmup_cosine(opt, warmup_steps, total, min_lr_ratio)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

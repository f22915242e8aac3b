"""The one optimiser recipe of the training stages: AdamW over decay / no-decay parameter groups, with a linear
warmup then cosine decay of the learning rate, stepped once per optimiser step.

Used by ``chanmusic.stages.pretrain`` and ``chanmusic.stages.align``. (lightly's ``CosineWarmupScheduler`` is not
used: its cosine runs over ``max_steps - 1`` steps, so its learning rates differ from these.)

A model may bring its own fine-tuning recipe (:class:`OptimRecipe`: encoder / head learning rates, layer-wise
decay, warm-up fraction, floor, betas, weight-decay exemptions): :func:`adamw_recipe` builds its parameter groups
(:func:`recipe_param_groups`) under the same schedule. Without a recipe nothing changes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch
from torch import nn

__all__ = ["param_groups", "total_steps", "warmup_cosine", "adamw_warmup_cosine", "OptimRecipe",
           "recipe_param_groups", "adamw_recipe"]


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


# ---- per-parameter-group recipes (a model's own fine-tuning recipe, brought by its YAML) ------------------------

RECIPE_KEYS = ("source", "encoder_lr", "head_lr", "layer_decay", "warmup_fraction", "min_lr_ratio", "betas",
               "encoder_no_weight_decay", "decay_1d")


@dataclass(frozen=True)
class OptimRecipe:
    """A fine-tuning recipe as parameter groups: what a model's official fine-tuning script does to its optimiser.

    Fields (all optional; an empty recipe reproduces :func:`adamw_warmup_cosine`'s groups and schedule):
        source: the official file(s) the values come from (kept in the run's hyperparameters).
        encoder_lr: peak learning rate of the encoder's parameters (its top layer under ``layer_decay``);
            ``None``: the stage's ``lr``.
        head_lr: peak learning rate of every other trainable parameter (head, logit scale); ``None``: ``lr``.
        layer_decay: layer-wise decay: an encoder parameter in layer ``i`` (``encoder.lr_layer_id(name)``, 0 =
            embeddings, ``n = encoder.n_lr_layers`` blocks, ``n + 1`` = above the blocks) gets
            ``encoder_lr · layer_decay ** (n + 1 - i)`` (BEiT/LaBraM ``LayerDecayValueAssigner``).
        warmup_fraction: warm-up as a fraction of the run's optimiser steps (official recipes count warm-up in
            epochs: 5 of 50 = 0.1); ``None``: the stage's ``warmup_steps``.
        min_lr_ratio: the cosine ends at this fraction of each group's peak (official ``min_lr / lr``).
        betas: AdamW betas.
        encoder_no_weight_decay: exempt the encoder's ``no_weight_decay_names()`` from weight decay (the
            official ``model.no_weight_decay()`` skip list).
        decay_1d: also decay 1-D parameters (biases, norm scales); official BEiT-style recipes do not,
            CBraMod's ``AdamW(params, weight_decay=wd)`` does.
    """

    source: str = ""
    encoder_lr: float | None = None
    head_lr: float | None = None
    layer_decay: float = 1.0
    warmup_fraction: float | None = None
    min_lr_ratio: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    encoder_no_weight_decay: bool = True
    decay_1d: bool = False

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, field: str = "model.init_args.recipe") -> "OptimRecipe":
        """Validate a YAML mapping; a bad key or value raises ``ValueError`` naming ``field``."""
        d = dict(d or {})
        unknown = sorted(set(d) - set(RECIPE_KEYS))
        if unknown:
            raise ValueError(f"{field}: unknown key(s) {unknown} — use {', '.join(RECIPE_KEYS)}")
        if "betas" in d:
            d["betas"] = tuple(float(b) for b in d["betas"])
            if len(d["betas"]) != 2:
                raise ValueError(f"{field}.betas: expected two numbers, got {list(d['betas'])}")
        r = cls(**d)
        for name in ("encoder_lr", "head_lr"):
            v = getattr(r, name)
            if v is not None and not v > 0:
                raise ValueError(f"{field}.{name}: must be positive, got {v}")
        if not 0 < r.layer_decay <= 1:
            raise ValueError(f"{field}.layer_decay: must be in (0, 1], got {r.layer_decay}")
        if r.warmup_fraction is not None and not 0 <= r.warmup_fraction < 1:
            raise ValueError(f"{field}.warmup_fraction: must be in [0, 1), got {r.warmup_fraction}")
        if not 0 <= r.min_lr_ratio <= 1:
            raise ValueError(f"{field}.min_lr_ratio: must be in [0, 1], got {r.min_lr_ratio}")
        return r

    def warmup_steps(self, total: int, default: int) -> int:
        """Warm-up steps of a run of ``total`` optimiser steps (``default``: the stage's ``warmup_steps``)."""
        return default if self.warmup_fraction is None else int(round(self.warmup_fraction * total))


def recipe_param_groups(named_params: Iterable[tuple[str, nn.Parameter]], lr: float, weight_decay: float,
                        recipe: OptimRecipe, encoder: nn.Module | None = None,
                        encoder_prefix: str = "encoder.") -> list[dict[str, Any]]:
    """AdamW parameter groups of the trainable ``named_params`` under ``recipe``.

    A parameter named ``encoder_prefix + sub`` belongs to ``encoder`` (``sub`` is its name inside it); every
    other parameter is "head". Each group holds parameters of one (part, layer, decay) in order of first
    appearance and carries ``lr`` (its peak learning rate), ``weight_decay``, ``lr_scale`` (the layer-decay
    factor) and ``name`` (``"<part>.layer<i>.decay|no_decay"``). The encoder gives layers with
    ``lr_layer_id(sub)`` and ``n_lr_layers`` (needed only when ``layer_decay < 1``) and exempt names with
    ``no_weight_decay_names()`` (optional).
    """
    n_layers = 0
    if recipe.layer_decay < 1.0:
        if encoder is None or not hasattr(encoder, "lr_layer_id"):
            raise ValueError(f"model.init_args.recipe.layer_decay: {type(encoder).__name__} has no layers "
                             "(lr_layer_id) — set layer_decay: 1.0 for this encoder")
        n_layers = int(encoder.n_lr_layers)
    skip: set[str] = set()
    if recipe.encoder_no_weight_decay and encoder is not None and hasattr(encoder, "no_weight_decay_names"):
        skip = set(encoder.no_weight_decay_names())
    groups: dict[tuple[str, int, bool], dict[str, Any]] = {}
    for name, p in named_params:
        if not p.requires_grad:
            continue
        in_encoder = name.startswith(encoder_prefix)
        sub = name[len(encoder_prefix):] if in_encoder else name
        layer, scale = 0, 1.0
        if in_encoder and recipe.layer_decay < 1.0:
            layer = int(encoder.lr_layer_id(sub))
            if not 0 <= layer <= n_layers + 1:
                raise ValueError(f"{type(encoder).__name__}.lr_layer_id({sub!r}) = {layer}, outside 0..{n_layers + 1}")
            scale = recipe.layer_decay ** (n_layers + 1 - layer)
        decay = (p.dim() >= 2 or recipe.decay_1d) and not (in_encoder and sub in skip)
        part = "encoder" if in_encoder else "head"
        key = (part, layer, decay)
        if key not in groups:
            peak = (recipe.encoder_lr if in_encoder else recipe.head_lr) or lr
            groups[key] = {"params": [], "lr": peak * scale, "lr_scale": scale,
                           "weight_decay": weight_decay if decay else 0.0,
                           "name": f"{part}.layer{layer}.{'decay' if decay else 'no_decay'}"}
        groups[key]["params"].append(p)
    return list(groups.values())


def adamw_recipe(named_params: Iterable[tuple[str, nn.Parameter]], lr: float, weight_decay: float,
                 warmup_steps: int, total: int, recipe: OptimRecipe, encoder: nn.Module | None = None) -> dict[str, Any]:
    """``configure_optimizers``' return value under ``recipe``: AdamW over :func:`recipe_param_groups`, every
    group's learning rate following the same :func:`warmup_cosine` factor (so the groups keep their ratios)."""
    groups = recipe_param_groups(named_params, lr, weight_decay, recipe, encoder)
    opt = torch.optim.AdamW(groups, lr=lr, betas=recipe.betas)
    sched = warmup_cosine(opt, recipe.warmup_steps(total, warmup_steps), total, recipe.min_lr_ratio)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

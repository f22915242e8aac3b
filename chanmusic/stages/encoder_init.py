"""Checkpoint loading for the stages (safe loading itself lives in ``chanmusic.core.checkpoints``).

A pretraining checkpoint holds two encoders and names them in ``checkpoint["chanmusic_encoders"]``
(``{"student": "encoder.", "teacher": "teacher_encoder."}``, written by
``chanmusic.stages.pretrain.PretrainModule.on_save_checkpoint``). Alignment loads the **teacher** by default:
the EMA teacher is the model DINO evaluates (the authors' code loads the student). An alignment checkpoint
holds one encoder (``encoder.*``), named ``"aligned"``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from chanmusic.core.checkpoints import CheckpointError, load_strict, safe_load, state_dict_of

__all__ = ["CheckpointError", "load_strict", "safe_load", "state_dict_of", "load_encoder_weights",
           "checkpoint_encoders", "ENCODER_CHOICES"]

ENCODER_CHOICES = ("teacher", "student")
log = logging.getLogger("chanmusic")
GAIN_PREFIX = "channel_gain."  # encoders.token_gain.TokenGain: alignment-only, absent from pretraining checkpoints


def checkpoint_encoders(ckpt: Any) -> dict[str, str]:
    """``{name: key prefix}`` of the encoders a loaded checkpoint holds: its ``chanmusic_encoders`` entry, else
    inferred from the keys (``teacher_encoder.*`` -> teacher, ``encoder.*`` -> student if a teacher is beside
    it, else ``aligned``)."""
    if isinstance(ckpt, dict) and isinstance(ckpt.get("chanmusic_encoders"), dict):
        return dict(ckpt["chanmusic_encoders"])
    keys = state_dict_of(ckpt).keys()
    has_teacher = any(k.startswith("teacher_encoder.") for k in keys)
    names: dict[str, str] = {}
    if any(k.startswith("encoder.") for k in keys):
        names["student" if has_teacher else "aligned"] = "encoder."
    if has_teacher:
        names["teacher"] = "teacher_encoder."
    return names


def load_encoder_weights(encoder: nn.Module, path: str | Path, which: str = "teacher") -> str:
    """Initialise ``encoder`` (strict) from one encoder of a checkpoint; returns the key prefix used.

    ``which``: ``"teacher"`` (default) or ``"student"`` of a pretraining checkpoint. A checkpoint with a single
    encoder (an alignment run: ``"aligned"``) loads that one whatever ``which`` says, since it has no choice.
    """
    if which not in ENCODER_CHOICES:
        raise CheckpointError(f"model.init_encoder_weights: {which!r} is not one of {ENCODER_CHOICES}")
    ckpt = safe_load(path)
    names = checkpoint_encoders(ckpt)
    if not names:
        sd = state_dict_of(ckpt)
        raise CheckpointError(f"{path}: no 'encoder.*' weights (keys start with "
                              f"{sorted({k.split('.')[0] for k in sd})[:8]}) — pass a pretraining or alignment "
                              f"checkpoint")
    if which in names:
        prefix = names[which]
    elif set(names) == {"aligned"}:
        prefix = names["aligned"]
    else:
        raise CheckpointError(f"{path}: no {which} encoder (it holds {sorted(names)}) — set "
                              f"model.init_encoder_weights to one of them")
    sd = state_dict_of(ckpt)
    sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    own = encoder.state_dict()
    pretraining = prefix != names.get("aligned")  # an aligned encoder must bring every weight it used
    fresh = [k for k in own if pretraining and k.startswith(GAIN_PREFIX) and k not in sub]
    for k in fresh:  # a gain the checkpoint's encoder did not have (pretraining reads the CLS, which it does
        sub[k] = own[k]  # not touch): it keeps its own initialisation (encoders.token_gain)
    if fresh:
        log.info("%s: no %s in the checkpoint; it keeps its initialisation", path, ", ".join(fresh))
    load_strict(encoder, sub, str(path))
    return prefix

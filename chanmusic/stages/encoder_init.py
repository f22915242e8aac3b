"""Checkpoint loading for the stages (safe loading itself lives in ``encoders.weights``)."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from encoders.weights import CheckpointError, load_strict, safe_load, state_dict_of

__all__ = ["CheckpointError", "load_strict", "safe_load", "state_dict_of", "load_encoder_weights"]


def load_encoder_weights(encoder: nn.Module, path: str | Path, prefix: str = "encoder.") -> None:
    """Initialise ``encoder`` from the ``encoder.*`` weights of a pretrain/align checkpoint (strict)."""
    sd = state_dict_of(safe_load(path))
    sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not sub:
        raise CheckpointError(f"{path}: no '{prefix}*' weights (keys start with "
                              f"{sorted({k.split('.')[0] for k in sd})[:8]})")
    load_strict(encoder, sub, str(path))

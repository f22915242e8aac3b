"""Safe weight loading for encoders and stages: no arbitrary pickle, every key accounted for.

Lives in ``encoders`` so adapters can load official checkpoints; ``chanmusic.stages.encoder_init`` re-exports it.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unsafe, truncated, or its keys do not match the model."""


def safe_load(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` (or safetensors) with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load — it contains Python objects beyond tensors and plain containers "
            f"(weights_only=True). Only load files you trust; re-save the weights as a plain state_dict. ({e})") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path}: unreadable checkpoint (truncated or corrupt?): {e}") from e


def state_dict_of(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict inside a Lightning checkpoint (``state_dict``) or a plain one."""
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(sd, dict):
        raise CheckpointError("checkpoint holds no state_dict")
    return sd


def key_diff(module: nn.Module, state) -> tuple[list[str], list[str], list[str]]:
    """Sorted ``(missing, unexpected, shape-mismatched)`` keys of ``state`` against ``module``'s state dict."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    return missing, unexpected, shape


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with a message naming every missing / unexpected key."""
    own = module.state_dict()
    missing, unexpected, shape = key_diff(module, state)
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:10]}{' …' if len(missing) > 10 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:10]}{' …' if len(unexpected) > 10 else ''}")
        if shape:
            parts.append("shape mismatch " + ", ".join(f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                                                        for k in shape[:10]))
        raise CheckpointError(f"{source}: weights do not match {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(state, strict=True)

"""Safe weight loading for encoders and stages: no arbitrary pickle, every key accounted for.

Lives in ``encoders`` so adapters can load official checkpoints; ``chanmusic.stages.init_from`` re-exports it.
"""
from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from chanmusic.core.errors import FormattedError

log = logging.getLogger("chanmusic")


class CheckpointError(FormattedError, RuntimeError):
    """A checkpoint is missing, unsafe, truncated, or its keys do not match the model."""


def safe_load(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents without running code from it: safetensors, else ``torch.load(weights_only=True)``,
    else (a file that names other Python objects: laion-clap ``.pt``, full Lightning saves such as the official
    EEGPT ``.ckpt``) the allow-listed unpickler of :mod:`chanmusic.core.safe_pickle`.

    In the last case every object outside the allow-list is skipped (``None`` in the result; nothing of it is
    built); a state dict that would need one of them is refused with the tensors-only conversion command.
    """
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
        if not names_objects(e):
            raise _corrupt(path, e) from e
        first = str(e)
    except Exception as e:  # noqa: BLE001 - random bytes make the unpickler raise anything (IndexError, KeyError)
        raise _corrupt(path, e) from e
    return _load_allowlisted(path, first)


def probe_checkpoint(path: str | Path) -> None:
    """Raise :class:`CheckpointError` unless ``path`` opens with ``torch.load(weights_only=True)`` (what Lightning's
    own ``ckpt_path`` loading needs); memory-mapped where the format allows, so nothing large is copied."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        try:
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - mmap's own errors say little (legacy format, truncation): load plainly
            torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not names_objects(e):
            raise _corrupt(path, e) from e
        raise CheckpointError(f"{path}: refused to load — it names Python objects beyond tensors and plain data "
                              f"({_first_line(e)}) — convert it to tensors only: {resave_command(path)}") from e
    except Exception as e:  # noqa: BLE001 - random bytes make the unpickler raise anything (IndexError, KeyError)
        raise _corrupt(path, e) from e


def names_objects(e: BaseException) -> bool:
    """Whether ``torch.load(weights_only=True)`` refused a well-formed pickle for naming a global (not a file of
    bytes that is no pickle at all: "Unsupported operand", "invalid load key")."""
    return "Unsupported global" in str(e) or "GLOBAL" in str(e)


def _corrupt(path: Path, e: BaseException) -> CheckpointError:
    return CheckpointError(f"{path}: unreadable checkpoint (truncated or corrupt, or not a PyTorch file): "
                           f"{_first_line(e)} — use a complete copy (fit writes RUN/checkpoints/*.ckpt)")


def check_fits(module: nn.Module, path: str | Path, where: str = "") -> None:
    """Raise :class:`CheckpointError` unless the state dict in checkpoint ``path`` has exactly ``module``'s keys and
    shapes (read memory-mapped with ``weights_only=True``)."""
    try:
        ck = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - probe_checkpoint reports unreadable files
        return
    state = state_dict_of(ck)
    missing, unexpected, shape = key_diff(module, state)
    if missing or unexpected or shape:
        own = module.state_dict()
        parts = ([f"shape {k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shape[:2]]
                 + [f"missing {k}" for k in missing[:2]] + [f"unexpected {k}" for k in unexpected[:2]])
        raise CheckpointError(f"{where or path}: does not fit the configured {type(module).__name__} "
                              f"({'; '.join(parts)}) — test with the settings it was trained with (--config "
                              f"RUN/config.yaml: encoder, window_s, resample)")


def _first_line(e: BaseException) -> str:
    """The telling line of a load error (torch's own advice to retry with ``weights_only=False`` left out: it would
    run the very code that was refused)."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip() and "weights_only" not in x and "trust" not in x]
    unsupported = [x for x in lines if "Unsupported" in x or "invalid load key" in x]
    return (unsupported or lines or [type(e).__name__])[0][:300]


def resave_command(path: str | Path) -> str:
    """The one-off command that writes a checkpoint's tensors as a plain state dict, read by the allow-listed
    unpickler (no code from the file runs; never ``weights_only=False``)."""
    out = Path(path).with_suffix(".weights.pt")
    return f"python -m chanmusic.core.safe_pickle {path} {out} (keeps tensors only), then pass {out}"


def _load_allowlisted(path: Path, why: str) -> dict[str, Any]:
    from chanmusic.core.safe_pickle import contains_refused, drop_refused, load_allowlisted

    try:
        obj, refused = load_allowlisted(path)
    except Exception as e:  # noqa: BLE001 - whatever a malformed pickle raises, it is refused as unreadable
        raise CheckpointError(f"{path}: refused to load — it holds Python objects beyond tensors and plain data "
                              f"that the allow-listed reader cannot rebuild ({type(e).__name__}: {_first_line(e)}) — "
                              f"it cannot be converted safely; use the model's weights in safetensors or a plain "
                              f"state dict") from e
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    bad = [k for k, v in sd.items() if contains_refused(v) or contains_refused(k)] if isinstance(sd, dict) else []
    if not isinstance(sd, dict) or bad or contains_refused(sd):
        what = f"key {bad[0]!r} holds" if bad else "its weights hold"
        raise CheckpointError(f"{path}: refused to load — {what} a Python object outside the allow-list "
                              f"({', '.join(refused[:3])}), which only arbitrary code could rebuild — convert it "
                              f"to tensors only: {resave_command(path)}")
    if refused:
        log.info("%s: loaded tensors and plain data only; skipped %d Python object type(s) outside the allow-list "
                 "(%s)", path, len(refused), ", ".join(refused[:4]))
    return drop_refused(obj)


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
        raise CheckpointError(f"{source}: weights do not match {type(module).__name__}: " + "; ".join(parts)
                              + f" — pass a checkpoint of this encoder with the same settings (the run's "
                              f"config.yaml names them), or set model.init_args.encoder to the encoder it was "
                              f"trained with")
    module.load_state_dict(state, strict=True)

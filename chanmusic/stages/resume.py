"""A resumed fit continues the random stream of the interrupted one, so channel dropout repeats the uninterrupted run.

A training stage calls :func:`save_rng` from ``on_save_checkpoint``, keeps :func:`saved_rng` of the checkpoint it
loads, and calls :func:`resume_at_train_start` from ``on_train_start``.
"""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["save_rng", "saved_rng", "resume_at_train_start"]

KEY = "chanmusic_rng"


def save_rng(checkpoint: dict[str, Any]) -> None:
    """Store the torch (and initialised CUDA) random state in ``checkpoint``."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state()
    checkpoint[KEY] = rng


def saved_rng(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The random state :func:`save_rng` stored, if any."""
    return checkpoint.get(KEY)


def resume_at_train_start(trainer: Any, rng: dict[str, Any] | None) -> None:
    """At ``on_train_start`` of a resumed fit: the RNG as it was when the checkpoint was written (set here, not on
    load, so nothing between loading and the first step draws from it), and the training loader's saved position
    (``datamodules.sampling.ResumableLoader``): Lightning 2.6 drops it when ``configure_optimizers`` asked for
    ``estimated_stepping_batches`` before the restore (Lightning-AI/pytorch-lightning#20550); its own loading
    method is a no-op once that is fixed."""
    fit_loop = trainer.fit_loop
    if getattr(fit_loop, "_combined_loader_states_to_load", None):
        fit_loop._load_combined_loader_states()
    if rng is not None:
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])

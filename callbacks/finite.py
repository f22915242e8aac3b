"""Stop a fit at the first NaN/Inf training loss, with an error naming the step and the likely cause.

Without it Lightning trains on ``loss nan`` to the end and exits 0, leaving checkpoints of NaN weights.
The ``chanmusic`` CLI adds :class:`FiniteLossCheck` to every trainer (``LightningCLI`` ``trainer_defaults``).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch import Callback
from chanmusic.core.errors import FormattedError


class NonFiniteLossError(FormattedError, RuntimeError):
    """The training loss became NaN or Inf (``chanmusic.core.errors`` prints it as one line, exit code 1)."""

    exit_code = 1


class FiniteLossCheck(Callback):
    """Raise :class:`NonFiniteLossError` before the backward pass of a non-finite training loss.

    The message names the global step, the batch, and what is most likely wrong: non-finite values in the
    batch itself (a damaged cache or bad input), else the optimisation (learning rate, precision).
    """

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        value = float(loss.detach().float().item()) if loss.numel() == 1 else float("nan")
        if loss.numel() == 1 and math.isfinite(value):
            return
        if loss.numel() != 1 and bool(torch.isfinite(loss.detach()).all()):
            return
        raise NonFiniteLossError(_message(trainer, value, getattr(self, "_batch", None)))

    def on_train_batch_start(self, trainer, pl_module, batch: Any, batch_idx: int) -> None:
        self._batch = batch  # what the loss is computed from (read only on failure)

    def on_train_batch_end(self, trainer, pl_module, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._batch = None


def _message(trainer, value: float, batch: Any) -> str:
    step = int(trainer.global_step)
    bad = _non_finite_inputs(batch)
    if bad:
        cause = (f"the batch itself holds non-finite values ({', '.join(bad)}) — the cache or the input data "
                 f"is damaged: delete the cache folder and run `chanmusic prepare` again")
    else:
        lr = _learning_rate(trainer)
        prec = getattr(trainer, "precision", "32-true")
        cause = (f"the inputs are finite, so the optimisation diverged (learning rate {lr}, precision {prec}) — "
                 f"lower --model.init_args.lr, add warmup (--model.init_args.warmup_steps), or use 32-bit "
                 f"precision")
    return (f"training loss: {value} at step {step} (epoch {int(trainer.current_epoch)}); the fit was stopped: "
            f"{cause}")


def _non_finite_inputs(batch: Any) -> list[str]:
    if not isinstance(batch, dict):
        return []
    out = []
    for k, v in batch.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
            out.append(f"{k}: {int((~torch.isfinite(v)).sum())} values")
    return out


def _learning_rate(trainer) -> str:
    try:
        return f"{trainer.optimizers[0].param_groups[0]['lr']:.3g}"
    except (IndexError, KeyError, AttributeError):
        return "unknown"

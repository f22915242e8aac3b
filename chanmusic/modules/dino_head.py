"""The DINO pieces the pretraining stage needs: projection head, EMA teacher update, cosine momentum schedule.

Ours, written to lightly 1.6.0's definitions (``lightly.models.modules.DINOProjectionHead``,
``lightly.models.utils.update_momentum``, ``lightly.utils.scheduler.cosine_schedule``) so a checkpoint written when
the stage used lightly's head loads unchanged: same module tree and state-dict keys (``layers.*``,
``last_layer.weight_g`` / ``weight_v``), same initialisation, same arithmetic. lightly itself is no longer a
dependency of the package (it brought hydra-core, a second Lightning package and torchvision for these ~60 lines);
the tests compare against it (``[test]`` extra). DINO's loss is :func:`chanmusic.modules.losses.dino_loss`.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn


class DINOProjectionHead(nn.Module):
    """DINO's head: a 3-layer MLP (GELU; optional BatchNorm), l2 normalisation, then a weight-normalised linear
    layer onto ``output_dim`` prototypes (Caron et al. 2021).

    Args:
        input_dim: width of the encoder output.
        hidden_dim: hidden width of the MLP.
        bottleneck_dim: width of the MLP's output (l2-normalised).
        output_dim: prototypes.
        batch_norm: BatchNorm1d after the two hidden linears (DINO's ResNet option; off for transformers).
        norm_last_layer: keep the prototype layer's weight norm fixed at 1 (``weight_g`` not trained).

    ``forward``: ``[B, input_dim]`` -> ``[B, output_dim]`` logits.
    """

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 output_dim: int = 65536, batch_norm: bool = False, norm_last_layer: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate([(input_dim, hidden_dim), (hidden_dim, hidden_dim),
                                           (hidden_dim, bottleneck_dim)]):
            hidden = i < 2
            # lightly's ProjectionHead: no bias where BatchNorm follows
            layers.append(nn.Linear(n_in, n_out, bias=not (batch_norm and hidden)))
            if batch_norm and hidden:
                layers.append(nn.BatchNorm1d(n_out))
            if hidden:
                layers.append(nn.GELU())
        self.layers = nn.Sequential(*layers)
        for module in self.layers:
            if isinstance(module, nn.Linear):
                _trunc_normal_(module.weight, std=0.02, a=-2.0, b=2.0)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0.0)
        with warnings.catch_warnings():  # the weight_g / weight_v keys of the checkpoints written so far
            warnings.simplefilter("ignore", FutureWarning)
            self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck_dim, output_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1.0)
        if norm_last_layer:
            self.last_layer.weight_g.requires_grad = False

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, input_dim]`` -> prototype logits ``[B, output_dim]``."""
        return self.last_layer(nn.functional.normalize(self.layers(x), dim=-1, p=2))


@torch.no_grad()
def _trunc_normal_(w: Tensor, std: float, a: float, b: float) -> None:
    """Truncated normal (mean 0) by the inverse CDF, lightly's ``_no_grad_trunc_normal`` step for step (the same
    draws for a seed; torch's own ``trunc_normal_`` has drawn differently since)."""
    cdf = lambda v: (1.0 + math.erf(v / math.sqrt(2.0))) / 2.0  # noqa: E731
    w.uniform_(2 * cdf(a / std) - 1, 2 * cdf(b / std) - 1).erfinv_().mul_(std * math.sqrt(2.0)).clamp_(min=a, max=b)


def freeze(model: nn.Module) -> None:
    """Turn off gradients of every parameter of ``model`` (the EMA teacher)."""
    for p in model.parameters():
        p.requires_grad = False


@torch.no_grad()
def update_momentum(model: nn.Module, model_ema: nn.Module, m: float) -> None:
    """``θ_ema ← m·θ_ema + (1−m)·θ`` for each pair of parameters (same order, same shapes)."""
    params, ema = list(model.parameters()), list(model_ema.parameters())
    if len(params) != len(ema):
        raise ValueError(f"update_momentum: {len(params)} parameters against {len(ema)} in the EMA copy")
    for p, e in zip(params, ema):
        e.mul_(m).add_(p, alpha=1.0 - m)


def cosine_schedule(step: int, max_steps: int, start_value: float, end_value: float) -> float:
    """Half a cosine from ``start_value`` (step 0) to ``end_value`` (step ``max_steps - 1`` and after)."""
    if step < 0 or max_steps < 0:
        raise ValueError(f"cosine_schedule: step {step} and max_steps {max_steps} must be >= 0")
    if max_steps <= 1 or step >= max_steps - 1:
        return float(end_value)
    return float(end_value - (end_value - start_value) * (math.cos(math.pi * step / (max_steps - 1)) + 1) / 2)

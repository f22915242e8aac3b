"""A linear skip path per token: each (electrode, time patch) token gets its own linear map of its raw samples.

Why (issue 28; docs/model.md, "linear skip"): the paper's model reads the EEG only through a shared patch
embedding, a transformer with per-token LayerNorms and a readout that averages tokens. Nothing in that chain can
pass an arbitrary per-electrode, per-time linear function of the raw samples through to the output, which is all
the linear reference (``encoders.linear_reference``) does, and the linear reference beat the paper's row on every
generator. This path adds, to the output token of electrode ``c`` and patch ``p``, ``W[c, p] · x̄[c, p]`` where
``x̄`` is the patch averaged in time to ``target_rate`` Hz (the linear reference's low-pass). A readout that
averages the present tokens then computes exactly a linear map of the decimated window — the linear reference —
beside the transformer's features. ``W`` starts at 0 (the model starts as the paper's) and is stored divided by
``lr_scale`` (default: the number of token positions), so Adam moves the *effective* weight of that mean at the
linear reference's pace instead of ``1/N`` of it. A removed electrode's tokens stay 0 (masked downstream).
Alignment-only, like the channel gain: a pretraining checkpoint loads without it (``chanmusic.stages.init_from``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["TokenLinearSkip"]


class TokenLinearSkip(nn.Module):
    """``forward(patches [B, R', P, S], rows [B, R'] long) -> [B, R', P, D]``: per-(row, patch) linear maps of
    the patch decimated to ``S // pool`` samples. ``weight [R, P_max, S', D]`` holds W / ``lr_scale``.

    Args:
        n_rows: token rows in the table (electrodes).
        max_patches: time patches in the table (a longer window than this is refused by the encoder).
        patch_size: samples per patch S.
        dim: token width D.
        pool: samples averaged into one (``sfreq / target_rate`` rounded, at least 1).
        lr_scale: the stored weight is multiplied by this (None: ``n_rows · max_patches``).
    """

    def __init__(self, n_rows: int, max_patches: int, patch_size: int, dim: int, pool: int,
                 lr_scale: float | None = None):
        super().__init__()
        if pool < 1 or pool > patch_size:
            raise ValueError(f"linear_skip: pool must be in [1, patch_size={patch_size}], got {pool}")
        self.pool = int(pool)
        self.n_in = patch_size // self.pool
        self.lr_scale = float(lr_scale if lr_scale is not None else n_rows * max_patches)
        if self.lr_scale <= 0:
            raise ValueError(f"linear_skip_lr_scale must be > 0, got {lr_scale}")
        self.weight = nn.Parameter(torch.zeros(n_rows, max_patches, self.n_in, dim))

    def forward(self, patches: Tensor, rows: Tensor) -> Tensor:
        B, R, P, S = patches.shape
        x = F.avg_pool1d(patches[..., : self.n_in * self.pool].reshape(B * R * P, 1, -1), self.pool)
        x = x.view(B, R, P, self.n_in)
        if bool((rows == rows[:1]).all()):  # one montage for the whole batch: no per-sample gather
            return torch.einsum("brps,rpsd->brpd", x, self.weight[rows[0], :P] * self.lr_scale)
        return torch.einsum("brps,brpsd->brpd", x, self.weight[rows][:, :, :P] * self.lr_scale)

"""Losses, apart from the training loop."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def clip_loss(eeg: Tensor, audio: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE (CLIP) between matched rows.

    Args:
        eeg: ``[N, D]`` EEG embeddings; audio: ``[N, D]`` audio (CLAP) embeddings; row i matches row i.
            Under DDP pass the embeddings gathered from every rank, so N is the global batch.
        logit_scale: scalar log inverse temperature.
    Returns:
        scalar loss ``(CE(rows) + CE(cols)) / 2``.
    """
    e = F.normalize(eeg.float(), dim=-1)
    a = F.normalize(audio.float(), dim=-1)
    logits = logit_scale.float().exp() * e @ a.T
    target = torch.arange(len(e), device=e.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))

"""Losses, apart from the training loop."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def clip_loss(eeg: Tensor, audio: Tensor, logit_scale: Tensor, music: Tensor | None = None) -> Tensor:
    """Symmetric InfoNCE (CLIP) between matched rows.

    Args:
        eeg: ``[N, D]`` EEG embeddings; audio: ``[N, D]`` audio (CLAP) embeddings; row i matches row i.
            Under DDP pass the embeddings gathered from every rank, so N is the global batch.
        logit_scale: scalar log inverse temperature.
        music: ``[N]`` music segment ids, or ``None``. Rows with the same id heard the same audio (the same song
            window heard by two subjects): such a pair is not a negative, so its logit is masked out in both
            directions (each row keeps its own positive).
    Returns:
        scalar loss ``(CE(rows) + CE(cols)) / 2``.
    """
    e = F.normalize(eeg.float(), dim=-1)
    a = F.normalize(audio.float(), dim=-1)
    logits = logit_scale.float().exp() * e @ a.T
    target = torch.arange(len(e), device=e.device)
    if music is not None:
        music = music.reshape(-1).to(e.device)
        same = (music[:, None] == music[None, :]) & ~torch.eye(len(e), dtype=torch.bool, device=e.device)
        logits = logits.masked_fill(same, float("-inf"))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def dino_loss(teacher_logits: Tensor, student_logits: Tensor, center: Tensor, teacher_temp: float,
              student_temp: float, pair_mask: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Multi-view self-distillation (DINO) cross-entropy over chosen (teacher view, student view) pairs.

    ``CE(softmax((t - center) / teacher_temp), log_softmax(s / student_temp))`` averaged over the batch and
    over the pairs where ``pair_mask`` is True (default: all pairs). Ours rather than lightly's ``DINOLoss``,
    which always drops pair (i, i): here a student view can be the teacher's crop *with channels removed*,
    and that pair is the channel-consistency signal we want to keep or drop by choice (``pair_mask``).

    Args:
        teacher_logits: ``[Vt, B, K]`` teacher head outputs (no gradient needed).
        student_logits: ``[Vs, B, K]`` student head outputs.
        center: ``[K]`` (or broadcastable) running centre of the teacher outputs.
        pair_mask: ``[Vt, Vs]`` bool.
    Returns:
        ``(loss, stats)`` where stats (detached) holds ``teacher_entropy`` (mean per-sample entropy of the
        teacher distribution), ``teacher_batch_entropy`` (entropy of its batch mean), ``teacher_mi``
        (their difference: mutual information between sample and prototype) and ``kl`` (mean
        KL(teacher‖student) over the used pairs).
    """
    Vt, Vs = teacher_logits.shape[0], student_logits.shape[0]
    if pair_mask is None:
        pair_mask = torch.ones(Vt, Vs, dtype=torch.bool, device=student_logits.device)
    if not bool(pair_mask.any()):
        raise ValueError("dino_loss: pair_mask selects no (teacher, student) pair")
    t = F.softmax((teacher_logits.float() - center.float()) / teacher_temp, dim=-1).detach()
    log_s = F.log_softmax(student_logits.float() / student_temp, dim=-1)
    ce = -torch.einsum("tbk,sbk->tsb", t, log_s).mean(-1)  # [Vt, Vs]
    w = pair_mask.to(ce.dtype)
    loss = (ce * w).sum() / w.sum()
    with torch.no_grad():
        ent_t = -(t * t.clamp_min(1e-12).log()).sum(-1)  # [Vt, B]
        p_mean = t.mean(1)
        batch_ent = -(p_mean * p_mean.clamp_min(1e-12).log()).sum(-1).mean()
        kl = ((ce.detach() - ent_t.mean(-1)[:, None]) * w).sum() / w.sum()
    return loss, {"teacher_entropy": ent_t.mean(), "teacher_batch_entropy": batch_ent,
                  "teacher_mi": batch_ent - ent_t.mean(), "kl": kl}

"""Pretraining stage: channel-wise multi-view self-distillation (DINO-style) on EEG alone.

The student (``encoder`` + ``head``) sees temporal crops of each window with a random subset of channels
removed; the EMA teacher (``teacher_encoder`` + ``teacher_head``) sees the global crops with every present
channel. The student learns to predict the teacher's centred, sharpened distribution over ``out_dim``
prototypes — consistency across temporal crops *and* channel subsets (the paper's pretraining).

The checkpoint holds both encoders — the student under ``encoder.*``, the EMA teacher under
``teacher_encoder.*`` — and names them (``checkpoint["chanmusic_encoders"]``); alignment loads the teacher by
default (``init_encoder_from: <ckpt>``, ``init_encoder_weights: teacher | student``), as DINO evaluates the
teacher.
"""
from __future__ import annotations

import copy
import logging
import math
from typing import Any, Sequence

import lightning as L
import torch
import torch.distributed as dist
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import Tensor, nn

from chanmusic.modules.channel_dropout import ChannelDropout, drop_channels, drop_clusters
from chanmusic.modules.losses import dino_loss
from chanmusic.modules.optim import adamw_warmup_cosine, total_steps
from chanmusic.modules.views import MultiCropEEG
from encoders.base import masked_mean

log = logging.getLogger("chanmusic")

POOLS = ("cls", "mean", "cls+mean")


class PretrainModule(L.LightningModule):
    """DINO-style self-distillation of an EEG encoder over temporal crops and random channel subsets.

    Per training batch (``eeg [B, C, T]``, ``channel_mask [B, C]``):

    1. ``n_global`` global crops (scale ``global_scale``, noise ``global_noise``) and ``n_local`` local crops
       (``local_scale``, ``local_noise``), see ``chanmusic.modules.views.MultiCropEEG``: cut at the native rate
       and kept at their length in whole patches (``crop_resize: false``, default), so band power means the
       same Hz in every view; or resized to ``global_len`` / ``local_len`` (``crop_resize: true``, the
       authors' recipe, which rescales every frequency by the crop fraction).
    2. Teacher (EMA, no gradients, eval mode): the global crops with the batch's channel mask ->
       ``[n_global, B, out_dim]``.
    3. Student: every local crop — and, with ``student_sees_global``, every global crop — each with its own
       ``student_channel_drop`` fraction of channels removed — as ``channel_drop_clusters`` spatial clusters
       of neighbouring electrodes (``channel_drop_mode: cluster``, default: the paper's structured dropout) or
       uniformly at random (``random``) -> ``[V_s, B, out_dim]``.
    4. Loss: ``chanmusic.modules.losses.dino_loss`` (teacher centring + temperatures) over all (teacher view,
       student view) pairs; ``same_view_pairs=False`` drops the pair (global i, student's global i), as
       DINO does — by default it is kept, since the student's copy has channels removed and predicting the
       full-channel teacher from it is the channel-consistency signal.
    5. After each optimiser step the teacher moves towards the student:
       ``θ_t ← m·θ_t + (1−m)·θ_s`` with ``m`` on lightly's ``cosine_schedule`` from ``momentum_start`` to
       ``momentum_end`` over the run (``momentum_steps`` or the trainer's total steps).

    The teacher starts as an exact copy of the student (encoder by ``deepcopy``; the projection head is
    rebuilt and loaded with ``load_state_dict`` because lightly's weight-normed head cannot be deep-copied).

    Logged: ``train/loss``, ``train/teacher_entropy`` (mean per-sample entropy of the teacher distribution;
    collapse → 0 or → log ``out_dim``), ``train/teacher_batch_entropy``, ``train/kl`` (KL(teacher‖student)),
    ``train/teacher_mi`` (batch minus per-sample entropy: how much the prototype says about the sample),
    ``train/embedding_std`` (std over the batch of the L2-normalised student embedding, mean over dims;
    ≈ 1/√D when healthy, → 0 under collapse), ``train/momentum``, ``train/teacher_temp``; ``val/loss``,
    ``val/kl``, ``val/teacher_entropy`` on the validation split (seeded views, no centre update).
    ``callbacks.teacher.CollapseMonitor`` (added by ``configure_callbacks`` when ``collapse_monitor``)
    warns on collapse.

    CPU defaults: ``out_dim`` 1024, head 256→64, 2 global + 4 local crops, local crops of half the window.
    The authors' GPU recipe (training.md §3): 8-s windows, 2 global (0.5–1) + 8 local (0.1–0.5) crops,
    student channel drop 0.6, head 512→2048→2048→256→512 prototypes, teacher temp 0.04, student 0.1,
    EMA 0.996→1, AdamW 8e-5, 40k steps, batch 60.

    Args:
        encoder: the student EEG encoder (``encoders.*``, YAML ``class_path``); must accept inputs of
            ``global_len`` and ``local_len`` samples (channel-wise encoders do, up to ``max_time_patches``).
        clap_dim: unused; accepted because the CLI links ``data.clap_dim`` into every stage.
        out_dim, head_hidden_dim, bottleneck_dim, norm_last_layer, head_batch_norm: lightly
            ``DINOProjectionHead`` settings (BatchNorm in the head is DINO's ResNet option; off for transformers).
        n_global, n_local, global_scale, local_scale, global_len, local_len, global_noise, local_noise: views.
            ``global_len`` defaults to the encoder's ``n_times``; ``local_len`` to half of it rounded down to
            a multiple of the encoder's ``patch_size`` (at least one patch; ``n_times`` if it has none).
        student_channel_drop: fraction of channels removed per student view. channel_drop_mode: ``cluster``
            (default) or ``random``; channel_drop_clusters: clusters per view
            (``chanmusic.modules.channel_dropout.ChannelDropout``).
        student_sees_global: also feed the (channel-dropped) global crops to the student.
        same_view_pairs: keep the (global i, student global i) pairs in the loss.
        teacher_temp, warmup_teacher_temp, warmup_teacher_temp_steps: teacher temperature, linearly warmed
            from ``warmup_teacher_temp`` over the first steps. student_temp: student temperature.
        center_momentum: momentum of the teacher-output centre.
        center_init: ``"first_batch"`` (default, ours): the centre starts at the first training batch's teacher
            mean, so the first steps are not dominated by the uncentred common component of a fresh head
            (with ``"zeros"``, DINO's choice, the teacher starts artificially sharp and its entropy and the loss
            first climb while the centre catches up). Validation before any training step uses the zero centre.
        momentum_start, momentum_end, momentum_steps: EMA schedule.
        lr, weight_decay, warmup_steps, min_lr_ratio: AdamW (no decay on biases/norms/1-D), linear warmup,
            cosine decay to ``min_lr_ratio·lr``.
        freeze_last_layer_steps: drop the prototype layer's gradients for the first steps (DINO: epoch 1).
        collapse_monitor: add ``callbacks.teacher.CollapseMonitor``.
        pool: what the projection head reads: ``"cls"`` (the encoder's ``pooled``), ``"mean"`` (mean of
            present tokens) or ``"cls+mean"``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        clap_dim: int = 512,
        out_dim: int = 1024,
        head_hidden_dim: int = 256,
        bottleneck_dim: int = 64,
        norm_last_layer: bool = True,
        head_batch_norm: bool = False,
        n_global: int = 2,
        n_local: int = 4,
        global_scale: Sequence[float] = (0.5, 1.0),
        local_scale: Sequence[float] = (0.2, 0.5),
        global_len: int | None = None,
        local_len: int | None = None,
        global_noise: float = 0.01,
        local_noise: float = 0.03,
        student_channel_drop: float = 0.5,
        channel_drop_mode: str = "cluster",
        student_sees_global: bool = True,
        same_view_pairs: bool = True,
        teacher_temp: float = 0.04,
        warmup_teacher_temp: float = 0.04,
        warmup_teacher_temp_steps: int = 0,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        momentum_start: float = 0.996,
        momentum_end: float = 1.0,
        momentum_steps: int | None = None,
        lr: float = 5e-4,
        weight_decay: float = 0.04,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.01,
        freeze_last_layer_steps: int = 0,
        collapse_monitor: bool = True,
        pool: str = "cls",
        center_init: str = "first_batch",
        crop_resize: bool = False,
        channel_drop_clusters: int = 2,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["encoder"])
        if pool not in POOLS:
            raise ValueError(f"pool {pool!r} is not one of {POOLS}")
        if n_local == 0 and not student_sees_global:
            raise ValueError("the student sees no view: set n_local > 0 or student_sees_global: true")
        if not same_view_pairs and student_sees_global and n_global == 1 and n_local == 0:
            raise ValueError("one global view without same-view pairs leaves no (teacher, student) pair")
        self.encoder = encoder
        dim = int(encoder.embed_dim)
        self.head = DINOProjectionHead(dim, head_hidden_dim, bottleneck_dim, out_dim, batch_norm=head_batch_norm,
                                       norm_last_layer=norm_last_layer)
        self.teacher_encoder = copy.deepcopy(encoder)
        self.teacher_head = DINOProjectionHead(dim, head_hidden_dim, bottleneck_dim, out_dim,
                                               batch_norm=head_batch_norm, norm_last_layer=norm_last_layer)
        self.teacher_head.load_state_dict(self.head.state_dict())
        deactivate_requires_grad(self.teacher_encoder)
        deactivate_requires_grad(self.teacher_head)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.register_buffer("center_initialised", torch.tensor(False))
        if center_init not in ("zeros", "first_batch"):
            raise ValueError(f"center_init {center_init!r} is not 'zeros' or 'first_batch'")

        n_times = int(getattr(encoder, "n_times"))
        patch = getattr(encoder, "patch_size", None)
        if local_len is None:
            local_len = max(patch, (n_times // 2) // patch * patch) if patch else n_times
        self.global_len, self.local_len = int(global_len or n_times), int(local_len)
        self.crops = MultiCropEEG(n_global, n_local, global_scale, local_scale, self.global_len, self.local_len,
                                  global_noise, local_noise, resize=crop_resize, quantum=int(patch or 1))
        self.student_dropout = ChannelDropout(student_channel_drop, channel_drop_mode,
                                              ch_names=getattr(encoder, "ch_names", None),
                                              n_clusters=channel_drop_clusters)
        self.collapse_stats: dict[str, float] = {}
        self._momentum = momentum_start
        self._total_steps = 1  # set from the trainer at fit start

    # ---- views and forward passes ------------------------------------------------------------------
    def drop(self, mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Remove ``student_channel_drop`` of the channels per row of ``mask [N, C]`` (train and eval alike)."""
        d = self.student_dropout
        if d.rate == 0.0:
            return mask
        if d.mode == "cluster":
            return drop_clusters(mask, d.rate, d.distances(mask.shape[1]), d.n_clusters, generator)
        return drop_channels(mask, d.rate, generator)

    def teacher_temperature(self, step: int) -> float:
        hp = self.hparams
        if step >= hp.warmup_teacher_temp_steps:
            return hp.teacher_temp
        return hp.warmup_teacher_temp + (hp.teacher_temp - hp.warmup_teacher_temp) * step / hp.warmup_teacher_temp_steps

    def embed(self, encoder: nn.Module, eeg: Tensor, channel_mask: Tensor | None = None) -> Tensor:
        """The projection head's input ``[B, D]``: CLS, mean of present tokens, or their sum (``pool``)."""
        out = encoder(eeg, channel_mask)
        if self.hparams.pool == "cls":
            return out.pooled
        mean = masked_mean(out.tokens, out.token_mask)
        return mean if self.hparams.pool == "mean" else out.pooled + mean

    def forward(self, eeg: Tensor, channel_mask: Tensor | None = None) -> Tensor:
        """Student embedding ``[B, D]`` of ``eeg [B, C, T]`` (see ``pool``)."""
        return self.embed(self.encoder, eeg, channel_mask)

    def _views_out(self, encoder: nn.Module, head: nn.Module, views: list[Tensor], masks: list[Tensor]):
        """Head outputs ``[V, B, K]`` and embeddings ``[V, B, D]`` of ``views`` (each ``[B, C, L_v]``) with
        ``masks`` (each ``[B, C]``); views of equal length go through the encoder as one batch."""
        B = views[0].shape[0]
        out: list[Tensor | None] = [None] * len(views)
        emb: list[Tensor | None] = [None] * len(views)
        by_len: dict[int, list[int]] = {}
        for i, v in enumerate(views):
            by_len.setdefault(v.shape[-1], []).append(i)
        for idx in by_len.values():
            e = self.embed(encoder, torch.cat([views[i] for i in idx]), torch.cat([masks[i] for i in idx]))
            o = head(e)
            for j, i in enumerate(idx):
                out[i], emb[i] = o[j * B:(j + 1) * B], e[j * B:(j + 1) * B]
        return torch.stack(out), torch.stack(emb)

    def _distill(self, batch: dict[str, Any], generator: torch.Generator | None = None):
        eeg = batch["eeg"]
        B, C, _ = eeg.shape
        mask = batch.get("channel_mask")
        if mask is None:
            mask = torch.ones(B, C, dtype=torch.bool, device=eeg.device)
        hp = self.hparams
        views = self.crops(eeg, generator)
        self.teacher_encoder.eval()
        self.teacher_head.eval()
        with torch.no_grad():
            t_out, _ = self._views_out(self.teacher_encoder, self.teacher_head, views.global_views,
                                       [mask] * hp.n_global)
        if self.training and not bool(self.center_initialised) and self.hparams.center_init == "first_batch":
            self.update_center(t_out)  # centre = this batch's teacher mean, before the first loss
        s_views = (views.global_views if hp.student_sees_global else []) + views.local_views
        s_masks = [self.drop(mask, generator) for _ in s_views]
        s_out, s_emb = self._views_out(self.encoder, self.head, s_views, s_masks)
        pairs = torch.ones(hp.n_global, len(s_out), dtype=torch.bool, device=eeg.device)
        if hp.student_sees_global and not hp.same_view_pairs:
            pairs[:, : hp.n_global].fill_diagonal_(False)
        temp = self.teacher_temperature(self.global_step)
        loss, stats = dino_loss(t_out, s_out, self.center, temp, hp.student_temp, pairs)
        emb = nn.functional.normalize(s_emb[0].detach().float(), dim=-1)
        stats["embedding_std"] = emb.std(0).mean() if len(emb) > 1 else emb.new_zeros(())
        stats["teacher_temp"] = torch.tensor(temp)
        return loss, stats, t_out

    # ---- training ------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss, stats, t_out = self._distill(batch)
        self.update_center(t_out)
        n = len(batch["eeg"])
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        for k, v in stats.items():
            self.log(f"train/{k}", v, batch_size=n)
        self.log("train/momentum", self._momentum, batch_size=n)
        self.collapse_stats = {k: float(v) for k, v in stats.items()}
        self.collapse_stats["loss"] = float(loss.detach())
        return loss

    @torch.no_grad()
    def update_center(self, teacher_out: Tensor) -> None:
        """``center ← c_m·center + (1−c_m)·mean(teacher_out)`` (averaged over ranks under DDP)."""
        batch_center = teacher_out.float().flatten(0, -2).mean(0, keepdim=True)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_center)
            batch_center /= dist.get_world_size()
        if self.hparams.center_init == "first_batch" and not bool(self.center_initialised):
            self.center.copy_(batch_center)
            self.center_initialised.fill_(True)
            return
        self.center_initialised.fill_(True)
        m = self.hparams.center_momentum
        self.center.mul_(m).add_(batch_center, alpha=1.0 - m)

    def momentum_at(self, step: int) -> float:
        """EMA momentum at optimiser step ``step`` (lightly ``cosine_schedule``)."""
        hp = self.hparams
        total = hp.momentum_steps or self._total_steps
        return float(cosine_schedule(step, max(1, total), hp.momentum_start, hp.momentum_end))

    @torch.no_grad()
    def update_teacher(self, momentum: float | None = None) -> float:
        """``θ_t ← m·θ_t + (1−m)·θ_s`` for encoder and head; ``m`` defaults to the schedule's. Returns ``m``."""
        m = self.momentum_at(max(0, self.global_step - 1)) if momentum is None else float(momentum)
        update_momentum(self.encoder, self.teacher_encoder, m)
        update_momentum(self.head, self.teacher_head, m)
        self._momentum = m
        return m

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.update_teacher()

    def on_after_backward(self) -> None:
        if self.global_step < self.hparams.freeze_last_layer_steps:
            for p in self.head.last_layer.parameters():
                p.grad = None

    def on_fit_start(self) -> None:
        total = self.trainer.estimated_stepping_batches
        self._total_steps = int(total) if math.isfinite(total) else max(1, int(self.trainer.max_steps))

    def on_train_epoch_start(self) -> None:
        self.teacher_encoder.eval()
        self.teacher_head.eval()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        gen = torch.Generator().manual_seed(1000 + batch_idx)
        loss, stats, _ = self._distill(batch, gen)
        n = len(batch["eeg"])
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=n)
        self.log("val/kl", stats["kl"], sync_dist=True, batch_size=n)
        self.log("val/teacher_entropy", stats["teacher_entropy"], sync_dist=True, batch_size=n)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        out = {"embedding": self(batch["eeg"], batch.get("channel_mask"))}
        out.update({k: batch[k] for k in ("song", "subject", "segment") if k in batch})
        return out

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Name both encoders in the checkpoint (``chanmusic.stages.encoder_init`` reads this)."""
        checkpoint["chanmusic_encoders"] = {"student": "encoder.", "teacher": "teacher_encoder."}

    def configure_callbacks(self):
        if not self.hparams.collapse_monitor:
            return []
        from callbacks.teacher import CollapseMonitor

        return [CollapseMonitor()]

    # ---- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self):
        """AdamW over the student (no decay on 1-D parameters), linear warmup then cosine decay to
        ``min_lr_ratio·lr`` (``chanmusic.modules.optim``)."""
        hp = self.hparams
        params = [p for m in (self.encoder, self.head) for p in m.parameters()]
        return adamw_warmup_cosine(params, hp.lr, hp.weight_decay, hp.warmup_steps, total_steps(self),
                                   hp.min_lr_ratio)

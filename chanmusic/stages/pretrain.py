"""Pretraining stage: channel-wise multi-view self-distillation (DINO-style) on EEG alone.

The student sees temporal crops of each window with a fraction of its channels removed; the EMA teacher sees the
global crops with every present channel; the student learns to predict the teacher's distribution over ``out_dim``
prototypes: consistency across temporal crops *and* channel subsets (the paper's pretraining; each step, the logged
statistics and the authors' GPU recipe: docs/stages.md). The checkpoint holds the student (``encoder.*``) and the
teacher (``teacher_encoder.*``); alignment's ``init_from`` loads the teacher by default.
"""
from __future__ import annotations

import copy
import logging
import math
from typing import Any, Sequence

import lightning as L
import torch
import torch.distributed as dist
from torch import Tensor, nn

from chanmusic.core.renamed import renamed
from chanmusic.modules.channel_dropout import ChannelDropout, drop_channels, drop_clusters
from chanmusic.modules.dino_head import DINOProjectionHead, cosine_schedule, freeze, update_momentum
from chanmusic.modules.losses import dino_loss
from chanmusic.modules.optim import adamw_warmup_cosine, total_steps
from chanmusic.modules.views import MultiCropEEG
from encoders.base import EEGEncoder, masked_mean

log = logging.getLogger("chanmusic")

READOUTS = ("cls", "mean", "cls+mean")  #: what the projection head reads


class PretrainModule(L.LightningModule):
    """DINO-style self-distillation of an EEG encoder over temporal crops and channel subsets (docs/stages.md).

    Args:
        encoder: the student EEG encoder (``encoders.*``); it must take inputs of global_len and local_len samples.
        clap_dim: unused (the CLI links data.clap_dim into every stage).
        out_dim: prototypes of the DINO projection head (``chanmusic.modules.dino_head``).
        head_hidden_dim: hidden width of the projection head.
        bottleneck_dim: bottleneck width of the projection head.
        norm_last_layer: weight-normalise the prototype layer with a fixed norm.
        head_batch_norm: BatchNorm in the projection head (DINO's ResNet option; off for transformers).
        n_global: global crops per window (the teacher's views).
        n_local: local crops per window.
        global_scale: range of a global crop's length as a fraction of the window.
        local_scale: range of a local crop's length as a fraction of the window.
        global_len: samples of a global view (null: the encoder's n_times).
        local_len: samples of a local view (null: half the window in whole patches).
        global_noise: Gaussian noise added to global views (in data units).
        local_noise: Gaussian noise added to local views.
        channel_dropout: fraction of channels removed per student view (``chanmusic.modules.channel_dropout``).
        channel_dropout_mode: ``cluster`` (spatial clusters of neighbouring electrodes, the paper's) or ``random``.
        student_sees_global: also feed the (channel-dropped) global crops to the student.
        same_view_pairs: keep the (global i, student's global i) pairs in the loss.
        teacher_temp: teacher softmax temperature after its warm-up.
        warmup_teacher_temp: teacher temperature at step 0 (linear warm-up to teacher_temp).
        warmup_teacher_temp_steps: steps of the teacher-temperature warm-up.
        student_temp: student softmax temperature.
        center_momentum: momentum of the teacher-output centre.
        momentum_start: EMA momentum of the teacher at the start (cosine schedule).
        momentum_end: EMA momentum of the teacher at the end.
        momentum_steps: length of the EMA schedule (null: the trainer's total steps).
        lr: peak AdamW learning rate (linear warm-up, cosine decay to min_lr_ratio·lr).
        weight_decay: AdamW weight decay (none on biases, norms, 1-D parameters).
        warmup_steps: linear warm-up steps.
        min_lr_ratio: final learning rate as a fraction of lr.
        freeze_last_layer_steps: drop the prototype layer's gradients for the first steps (DINO: epoch 1).
        collapse_monitor: add ``callbacks.collapse_monitor.CollapseMonitor`` (warns on collapse).
        readout: what the projection head reads: ``cls`` (the encoder's pooled), ``mean`` (of tokens) or ``cls+mean``.
        center_init: ``first_batch`` (the first batch's teacher mean) or ``zeros`` (DINO's).
        crop_resize: resize crops to global_len / local_len (the authors') instead of cutting whole patches.
        channel_dropout_clusters: spatial clusters per student view (cluster mode).
        student_channel_drop: deprecated name of channel_dropout.
        channel_drop_mode: deprecated name of channel_dropout_mode.
        pool: deprecated name of readout.
        channel_drop_clusters: deprecated name of channel_dropout_clusters.
    """

    def __init__(
        self,
        encoder: EEGEncoder,
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
        channel_dropout: float = 0.5,
        channel_dropout_mode: str = "cluster",
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
        readout: str = "cls",
        center_init: str = "first_batch",
        crop_resize: bool = False,
        channel_dropout_clusters: int = 2,
        student_channel_drop: float | None = None,
        channel_drop_mode: str | None = None,
        pool: str | None = None,
        channel_drop_clusters: int | None = None,
    ):
        super().__init__()
        where = "model.init_args"
        channel_dropout = renamed(where, "student_channel_drop", "channel_dropout", student_channel_drop,
                                  channel_dropout, 0.5)
        channel_dropout_mode = renamed(where, "channel_drop_mode", "channel_dropout_mode", channel_drop_mode,
                                       channel_dropout_mode, "cluster")
        readout = renamed(where, "pool", "readout", pool, readout, "cls")
        channel_dropout_clusters = renamed(where, "channel_drop_clusters", "channel_dropout_clusters",
                                           channel_drop_clusters, channel_dropout_clusters, 2)
        self.save_hyperparameters(ignore=["encoder", "student_channel_drop", "channel_drop_mode", "pool",
                                          "channel_drop_clusters"])
        # the CLI saves the config as given: a value read under an old name replaces the new name's default
        self.hparams.update(channel_dropout=channel_dropout, channel_dropout_mode=channel_dropout_mode, readout=readout,
                            channel_dropout_clusters=channel_dropout_clusters)
        if readout not in READOUTS:
            raise ValueError(f"model.init_args.readout: {readout!r} is not one of {READOUTS}")
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
        freeze(self.teacher_encoder)
        freeze(self.teacher_head)
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
        self.channel_dropout = ChannelDropout(channel_dropout, channel_dropout_mode,
                                              ch_names=getattr(encoder, "ch_names", None),
                                              n_clusters=channel_dropout_clusters)
        self.collapse_stats: dict[str, float] = {}
        self._momentum = momentum_start
        self._total_steps = 1  # set from the trainer at fit start

    # ---- views and forward passes ------------------------------------------------------------------
    def drop(self, mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Remove ``channel_dropout`` of the channels per row of ``mask [N, C]`` (train and eval alike)."""
        d = self.channel_dropout
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

    def embed(self, encoder: EEGEncoder, eeg: Tensor, channel_mask: Tensor | None = None) -> Tensor:
        """The projection head's input ``[B, D]``: CLS, mean of present tokens, or their sum (``readout``)."""
        out = encoder(eeg, channel_mask)
        if self.hparams.readout == "cls":
            return out.pooled
        mean = masked_mean(out.tokens, out.token_mask)
        return mean if self.hparams.readout == "mean" else out.pooled + mean

    def forward(self, eeg: Tensor, channel_mask: Tensor | None = None) -> Tensor:
        """Student embedding ``[B, D]`` of ``eeg [B, C, T]`` (see ``readout``)."""
        return self.embed(self.encoder, eeg, channel_mask)

    def _views_out(self, encoder: EEGEncoder, head: nn.Module, views: list[Tensor], masks: list[Tensor]):
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
        """EMA momentum at optimiser step ``step`` (``modules.dino_head.cosine_schedule``: lightly's definition)."""
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
        """Name both encoders in the checkpoint (``chanmusic.stages.init_from`` reads this)."""
        checkpoint["chanmusic_encoders"] = {"student": "encoder.", "teacher": "teacher_encoder."}

    def configure_callbacks(self):
        """The split and training spans in every checkpoint (alignment checks them: ``init_from.check_init_split``)."""
        from chanmusic.evaluation.provenance import ProvenanceCallback

        if not self.hparams.collapse_monitor:
            return [ProvenanceCallback()]
        from callbacks.collapse_monitor import CollapseMonitor

        return [ProvenanceCallback(), CollapseMonitor()]

    # ---- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self):
        """AdamW over the student (no decay on 1-D parameters), linear warmup then cosine decay to
        ``min_lr_ratio·lr`` (``chanmusic.modules.optim``)."""
        hp = self.hparams
        params = [p for m in (self.encoder, self.head) for p in m.parameters()]
        return adamw_warmup_cosine(params, hp.lr, hp.weight_decay, hp.warmup_steps, total_steps(self),
                                   hp.min_lr_ratio)

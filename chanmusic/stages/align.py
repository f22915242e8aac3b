"""Alignment stage: EEG encoder + head trained to the cached CLAP embeddings with symmetric InfoNCE."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from chanmusic.modules.channel_dropout import ChannelDropout
from chanmusic.stages.encoder_init import load_encoder_weights
from chanmusic.modules.heads import build_head
from chanmusic.modules.losses import clip_loss
from chanmusic.modules.optim import adamw_warmup_cosine, total_steps
from chanmusic.evaluation.metrics import Identification
from chanmusic.evaluation.provenance import ProvenanceCallback, run_provenance
from datamodules.cache import atomic_write_text

log = logging.getLogger("chanmusic")

# name -> (distractors, n_way)
ID_METRICS = {"id50": ("segment", 50), "song14": ("song", 14), "genre10": ("genre", 10),
              "within_song": ("within_song", 10)}


class AlignModule(L.LightningModule):
    """EEG encoder (injected) + head -> CLAP space, symmetric InfoNCE with a learnable temperature.

    Args:
        encoder: any ``encoders.base.EEGEncoder`` (YAML ``class_path``).
        clap_dim: CLAP embedding size (linked from the data module).
        head: ``linear`` (on pooled), ``mlp`` (token mean), ``temporal`` (conv over tokens), ``tokens``
            (channel-keeping readout; needs a fixed token grid).
        head_hidden: hidden width of the head (per-token width for ``tokens``).
        lr, weight_decay, warmup_steps: AdamW with linear warmup then cosine decay over the run.
        temperature_init: initial softmax temperature (logit scale = log(1/T)), clamped to ≤ 100.
        learn_temperature: learn the logit scale.
        freeze_encoder: keep the encoder fixed (eval mode, no gradients): the ablation "encoder fixed".
        init_encoder_from: checkpoint (pretrain or align) whose ``encoder.*`` weights initialise the encoder.
        channel_dropout: fraction of channels removed per training sample (structured channel dropout).
        channel_dropout_mode: see ``chanmusic.modules.channel_dropout.ChannelDropout``.
        id_repeats, id_seed: repeats and seed of the identification metrics.
    """

    def __init__(
        self,
        encoder: nn.Module,
        clap_dim: int = 512,
        head: str = "mlp",
        head_hidden: int = 512,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_steps: int = 0,
        temperature_init: float = 0.07,
        learn_temperature: bool = True,
        freeze_encoder: bool = False,
        init_encoder_from: str | None = None,
        channel_dropout: float = 0.0,
        channel_dropout_mode: str = "random",
        id_repeats: int = 10,
        id_seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["encoder"])
        self.encoder = encoder
        if init_encoder_from:
            load_encoder_weights(self.encoder, init_encoder_from)
        n_tokens = getattr(encoder, "n_tokens", 0)
        self.head = build_head(head, encoder.embed_dim, clap_dim, head_hidden, n_tokens)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature_init)),
                                        requires_grad=learn_temperature)
        # cluster mode needs electrode positions: the encoder knows its channel names (linked from the data)
        self.channel_dropout = ChannelDropout(channel_dropout, channel_dropout_mode,
                                              ch_names=getattr(encoder, "ch_names", None))
        if freeze_encoder:
            self.encoder.requires_grad_(False)
        self.test_metrics = nn.ModuleDict({
            name: Identification(n_way, kind, id_repeats, id_seed) for name, (kind, n_way) in ID_METRICS.items()})

    # ---- forward -------------------------------------------------------------------------------
    def embed(self, eeg: Tensor, channel_mask: Tensor | None = None) -> Tensor:
        """EEG ``[B, C, T]`` -> CLAP-space embedding ``[B, clap_dim]`` (not normalised)."""
        out = self.encoder(eeg, channel_mask)
        return self.head(out)

    def forward(self, eeg: Tensor, channel_mask: Tensor | None = None) -> Tensor:
        return self.embed(eeg, channel_mask)

    def on_train_epoch_start(self) -> None:
        if self.hparams.freeze_encoder:
            self.encoder.eval()

    def _step(self, batch: dict[str, Any], train: bool) -> tuple[Tensor, Tensor]:
        mask = batch["channel_mask"]
        if train:
            mask = self.channel_dropout(mask)
        emb = self.embed(batch["eeg"], mask)
        e, a = self._gather(emb), self._gather(batch["clap"])
        loss = clip_loss(e, a, self.logit_scale)
        return loss, emb

    def _gather(self, x: Tensor) -> Tensor:
        """All ranks' rows with gradients flowing back to this rank's (``[W*B, D]``; identity on one device)."""
        if self.trainer is None or self.trainer.world_size == 1:
            return x
        g = self.all_gather(x, sync_grads=True)
        return g.flatten(0, 1) if g.dim() == x.dim() + 1 else g

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss, _ = self._step(batch, train=True)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["eeg"]))
        self.log("train/temperature", 1.0 / self.logit_scale.exp(), batch_size=len(batch["eeg"]))
        return loss

    # ---- resume: augmentations continue the random stream of the interrupted run ------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = torch.cuda.get_rng_state()
        checkpoint["chanmusic_rng"] = rng

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_to_restore = checkpoint.get("chanmusic_rng")

    def on_train_start(self) -> None:
        """Resumed fit: the RNG as it was when the checkpoint was written (set here, not on load, so nothing
        between loading and the first step draws from it). Channel dropout then repeats the uninterrupted run.

        Also hands the training loader its saved position (``datamodules.sampling.ResumableLoader``): Lightning
        2.6 drops it when ``configure_optimizers`` asked for ``estimated_stepping_batches`` before the restore
        (Lightning-AI/pytorch-lightning#20550); its own loading method is a no-op once that is fixed.
        """
        fit_loop = self.trainer.fit_loop
        if getattr(fit_loop, "_combined_loader_states_to_load", None):
            fit_loop._load_combined_loader_states()
        rng, self._rng_to_restore = getattr(self, "_rng_to_restore", None), None
        if rng is not None:
            torch.set_rng_state(rng["torch"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state(rng["cuda"])

    def on_test_start(self) -> None:
        self._rng_to_restore = None  # a checkpoint loaded for testing leaves the RNG alone

    def configure_callbacks(self):
        """Provenance in every checkpoint; ``test`` refuses a split other than the checkpoint's (its module)."""
        return [ProvenanceCallback()]

    def on_before_zero_grad(self, optimizer) -> None:
        with torch.no_grad():
            self.logit_scale.clamp_(0.0, math.log(100.0))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        loss, _ = self._step(batch, train=False)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=len(batch["eeg"]))

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        loss, emb = self._step(batch, train=False)
        self.log("test/loss", loss, sync_dist=True, batch_size=len(batch["eeg"]))
        for m in self.test_metrics.values():
            m.update(emb, batch["clap"], batch["music"], batch["song"], batch["genre"], batch["stimulus"],
                     batch["start"], batch["length"], batch["segment"])

    def on_test_epoch_end(self) -> None:
        results = {name: {k: v.item() for k, v in m.compute().items()} for name, m in self.test_metrics.items()}
        for m in self.test_metrics.values():
            m.reset()
        for name, r in results.items():
            r["n"] = int(r["n"])
            self.log(f"test/{name}", r["mean"], rank_zero_only=True)
        self.write_metrics(results)

    def write_metrics(self, results: dict[str, dict[str, Any]]) -> Path | None:
        """Merge ``results`` into ``metrics.json`` in the run's log directory (rank 0 only).

        Call it on every rank: ``trainer.log_dir`` is a broadcast under DDP, so asking for it on rank 0 only
        would pair with the next collective of the other ranks (and hang or crash them).
        """
        if self.trainer is None:
            return None
        out_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        if not self.trainer.is_global_zero:
            return None
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "metrics.json"
        existing = json.loads(path.read_text()) if path.exists() else {}
        existing.update(results)
        prov = run_provenance(self.trainer)
        if prov is not None:  # a test run: what it was made from (evaluation.provenance)
            existing["provenance"] = prov
        atomic_write_text(path, json.dumps(existing, indent=2))
        log.info("wrote %s", path)
        self.metrics_path = path
        return path

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        emb = self.embed(batch["eeg"], batch["channel_mask"])
        return {"embedding": emb, **{k: batch[k] for k in ("clap", "song", "subject", "segment", "music")}}

    # ---- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self):
        """AdamW (no decay on 1-D parameters), linear warmup then cosine decay (``chanmusic.modules.optim``)."""
        hp = self.hparams
        return adamw_warmup_cosine(self.parameters(), hp.lr, hp.weight_decay, hp.warmup_steps, total_steps(self))

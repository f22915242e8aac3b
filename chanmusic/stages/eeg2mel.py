"""EEG2Mel stage: the mel regression of Ramirez-Aristizabal & Kello beside the alignment InfoNCE.

The EEG2Mel CNN (``encoders.eeg2mel.EEG2Mel``) regresses the cached mels, standardised per mel bin with the training
split's statistics; its embedding, read by the head of an aligned model (``chanmusic.modules.aligned``), is aligned
to CLAP, so ``test`` writes the alignment metrics plus ``mel_mse`` and ``mel_id50`` (docs/stages.md):

    loss = mel_weight * MSE(mel_pred, (mel - mean) / std) + clip_weight * InfoNCE(head(embedding), CLAP)
"""
from __future__ import annotations

import logging
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from encoders.base import EEGEncoder
from chanmusic.core.renamed import renamed
from chanmusic.results.metrics_file import metric_entry
from chanmusic.evaluation.metrics import Identification, reset_metric, summarize
from chanmusic.evaluation.provenance import ProvenanceCallback
from chanmusic.modules.aligned import AlignedModel, HoldsAlignedModel, hold
from chanmusic.modules.channel_dropout import ChannelDropout
from chanmusic.modules.optim import adamw_warmup_cosine, total_steps
from chanmusic.stages.align import AlignedTestMetrics, gather_rows, write_metrics
from chanmusic.stages.init_from import load_init_from
from chanmusic.stages.resume import resume_at_train_start, save_rng, saved_rng

log = logging.getLogger("chanmusic")


class EEG2MelModule(HoldsAlignedModel, L.LightningModule):
    """EEG2Mel encoder trained on the cached mels, its embedding aligned to CLAP by an aligned model's head.

    Args:
        encoder: an encoder with ``forward_all(eeg, mask) -> (EncoderOutput, mel)``, ``n_mels`` and ``n_frames``
            (``encoders.eeg2mel.EEG2Mel``).
        clap_dim: CLAP embedding size (linked from the data module).
        mel_weight: weight of the mel MSE.
        clip_weight: weight of the InfoNCE to CLAP (0: the paper's pure regressor; only mel_* metrics mean anything).
        mel_stats_batches: train batches used for the per-bin mel mean and standard deviation.
        head: the head on the embedding (``chanmusic.modules.heads``; the paper has none: linear).
        head_hidden: hidden width of the head.
        lr: peak AdamW learning rate (the paper's Adam: 1.5e-3), linear warm-up then cosine decay.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps.
        temperature_init: initial InfoNCE temperature.
        learn_temperature: learn the InfoNCE temperature.
        freeze_encoder: keep the encoder fixed (needs init_from).
        init_from: pretraining or aligned checkpoint whose encoder weights initialise the encoder.
        channel_dropout: fraction of electrodes removed per training window.
        channel_dropout_mode: ``random`` or ``cluster``.
        id_repeats: repeats of the identification draws.
        id_seed: seed of the identification draws.
        init_encoder_from: deprecated name of init_from.
    """

    def __init__(
        self,
        encoder: EEGEncoder,
        clap_dim: int = 512,
        mel_weight: float = 1.0,
        clip_weight: float = 1.0,
        mel_stats_batches: int = 50,
        head: str = "linear",
        head_hidden: int = 512,
        lr: float = 1.5e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        temperature_init: float = 0.07,
        learn_temperature: bool = True,
        freeze_encoder: bool = False,
        init_from: str | None = None,
        channel_dropout: float = 0.0,
        channel_dropout_mode: str = "random",
        id_repeats: int = 10,
        id_seed: int = 0,
        init_encoder_from: str | None = None,
    ):
        super().__init__()
        init_from = renamed("model.init_args", "init_encoder_from", "init_from", init_encoder_from, init_from, None)
        self.save_hyperparameters(ignore=["encoder", "init_encoder_from"])
        # the CLI saves the config as given: a value read under an old name replaces the new name's default
        self.hparams.update(init_from=init_from)
        load_init_from(encoder, init_from, "teacher", freeze_encoder)
        hold(self, "aligned", AlignedModel(encoder, clap_dim, head, head_hidden, None, 8, temperature_init,
                                           learn_temperature))
        self.channel_dropout = ChannelDropout(channel_dropout, channel_dropout_mode,
                                              ch_names=getattr(encoder, "ch_names", None))
        if freeze_encoder:
            self.aligned.freeze_encoder()
        self.test_metrics = AlignedTestMetrics(id_repeats, id_seed)
        for attr in ("forward_all", "n_mels", "n_frames"):
            if not hasattr(encoder, attr):
                raise TypeError(f"EEG2MelModule needs an encoder with {attr!r} (encoders.eeg2mel.EEG2Mel), "
                                f"got {type(encoder).__name__}")
        if mel_weight < 0 or clip_weight < 0 or mel_weight + clip_weight == 0:
            raise ValueError("mel_weight and clip_weight must be >= 0 and not both 0")
        self.register_buffer("mel_mean", torch.zeros(encoder.n_mels))
        self.register_buffer("mel_std", torch.ones(encoder.n_mels))
        self.register_buffer("mel_stats_ready", torch.tensor(False))
        self.mel_id = Identification(50, "segment", id_repeats, id_seed)
        self._mel_mse: list[Tensor] = []
        self._last_mel: tuple[Tensor, Tensor] | None = None
        self._rng_to_restore: dict[str, Any] | None = None


    # ---- mel normalisation ---------------------------------------------------------------------
    def _check_mel(self, mel: Tensor) -> None:
        want = (self.encoder.n_mels, self.encoder.n_frames)
        if tuple(mel.shape[1:]) != want:
            raise ValueError(f"batch mel is {tuple(mel.shape)} but the encoder predicts [B, {want[0]}, {want[1]}]: "
                             f"set model.init_args.encoder.init_args.n_mels / n_frames to the cache's mel shape")

    @torch.no_grad()
    def set_mel_stats(self, mels: list[Tensor]) -> None:
        """Per-bin mean and std over items and frames of ``mels`` (each ``[B, n_mels, n_frames]``)."""
        m = torch.cat([x.float().to(self.mel_mean.device) for x in mels])
        self._check_mel(m)
        self.mel_mean.copy_(m.mean((0, 2)))
        self.mel_std.copy_(m.std((0, 2)).clamp_min(1e-5))
        self.mel_stats_ready.fill_(True)

    def on_fit_start(self) -> None:
        if bool(self.mel_stats_ready):
            return
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not hasattr(dm, "train_dataloader"):
            return  # set lazily from the first training batch
        mels = []
        for i, batch in enumerate(dm.train_dataloader()):
            if i >= self.hparams.mel_stats_batches:
                break
            mels.append(batch["mel"])
        if mels:
            self.set_mel_stats(mels)
            log.info("EEG2Mel: mel statistics from %d train batches", len(mels))

    def normalise_mel(self, mel: Tensor) -> Tensor:
        return (mel.float() - self.mel_mean[:, None]) / self.mel_std[:, None]

    # ---- steps -------------------------------------------------------------------------------------
    def _step(self, batch: dict[str, Any], train: bool) -> tuple[Tensor, Tensor]:
        """``(loss, embedding)`` of a batch; keeps the predicted and target mels for the test metrics."""
        self._check_mel(batch["mel"])
        if not bool(self.mel_stats_ready):
            if not train:
                raise RuntimeError("EEG2Mel: mel statistics are not set (train first or load a trained checkpoint)")
            self.set_mel_stats([batch["mel"]])
        mask = batch["channel_mask"]
        if train:
            mask = self.channel_dropout(mask)
        out, mel_pred = self.encoder.forward_all(batch["eeg"], mask)
        emb = self.aligned.read(out)
        target = self.normalise_mel(batch["mel"])
        mel_loss = F.mse_loss(mel_pred.float(), target)
        loss = self.hparams.mel_weight * mel_loss
        stage = "train" if train else ("test" if self._trainer is not None and self._trainer.testing else "val")
        if self.hparams.clip_weight > 0:
            align = self.aligned.loss(gather_rows(self, emb), gather_rows(self, batch["clap"]))
            loss = loss + self.hparams.clip_weight * align
            self._log(f"{stage}/clip_loss", align, batch)
        self._log(f"{stage}/mel_loss", mel_loss, batch)
        self._last_mel = (mel_pred.detach(), target)
        return loss, emb

    def _log(self, name: str, value: Tensor, batch: dict[str, Any]) -> None:
        if self._trainer is not None:
            self.log(name, value, batch_size=len(batch["eeg"]), sync_dist=not name.startswith("train"))

    def on_train_epoch_start(self) -> None:
        if self.hparams.freeze_encoder:
            self.encoder.eval()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss, _ = self._step(batch, train=True)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["eeg"]))
        self.log("train/temperature", self.aligned.temperature, batch_size=len(batch["eeg"]))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        loss, _ = self._step(batch, train=False)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=len(batch["eeg"]))

    def on_before_zero_grad(self, optimizer) -> None:
        self.aligned.clamp_temperature()

    # ---- resume (chanmusic.stages.resume) -----------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        save_rng(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_to_restore = saved_rng(checkpoint)

    def on_train_start(self) -> None:
        rng, self._rng_to_restore = self._rng_to_restore, None
        resume_at_train_start(self.trainer, rng)

    def on_test_start(self) -> None:
        self._rng_to_restore = None  # a checkpoint loaded for testing leaves the RNG alone

    def configure_callbacks(self):
        """Provenance in every checkpoint; ``test`` refuses a split other than the checkpoint's."""
        return [ProvenanceCallback()]

    # ---- test ------------------------------------------------------------------------------------------
    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        loss, emb = self._step(batch, train=False)
        self.log("test/loss", loss, sync_dist=True, batch_size=len(batch["eeg"]))
        self.test_metrics.update(emb, batch)
        pred, target = self._last_mel
        self._mel_mse.append((pred - target).pow(2).flatten(1).mean(1).cpu())
        self.mel_id.update(pred.flatten(1), target.flatten(1), batch["music"], batch["song"], batch["genre"],
                           batch["stimulus"], batch["start"], batch["length"])

    def on_test_epoch_end(self) -> None:
        self.write_metrics(*self.test_metrics.compute(lambda name, v: self.log(name, v, rank_zero_only=True)))
        mse = torch.cat(self._mel_mse).numpy() if self._mel_mse else np.zeros(0)
        self._mel_mse = []
        results: dict[str, dict[str, Any]] = {}
        if len(mse):
            results["mel_mse"] = summarize(mse)
        try:
            r = metric_entry(self.mel_id.compute())
            results["mel_id50"] = r
            self.log("test/mel_id50", r["mean"], rank_zero_only=True)
        except ValueError as e:  # too few distinct test segments
            log.warning("mel_id50 not computed: %s", e)
        reset_metric(self.mel_id)
        self.write_metrics(results)

    def write_metrics(self, results: dict[str, dict[str, Any] | None],
                      reasons: dict[str, str] | None = None) -> Any:
        """Merge ``results`` into the run's ``metrics.json`` (``chanmusic.stages.align.write_metrics``)."""
        return write_metrics(self.trainer, results, reasons)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        emb = self.embed(batch["eeg"], batch["channel_mask"])
        out = {"embedding": emb, **{k: batch[k] for k in ("clap", "song", "subject", "segment", "music")}}
        _, mel = self.encoder.forward_all(batch["eeg"], batch["channel_mask"])
        out["mel"] = mel * self.mel_std[:, None] + self.mel_mean[:, None]  # back in the cache's mel units
        return out

    def configure_optimizers(self):
        """AdamW (no decay on 1-D parameters), linear warmup then cosine decay (``chanmusic.modules.optim``)."""
        hp = self.hparams
        return adamw_warmup_cosine(self.parameters(), hp.lr, hp.weight_decay, hp.warmup_steps, total_steps(self))

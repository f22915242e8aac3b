"""EEG2Mel training stage: the alignment stage with the mel regression loss of Ramirez-Aristizabal & Kello.

What the paper does: a CNN maps one 1-s EEG window (PSD image) to the mel spectrogram of the music heard
(librosa, 128 mels, dB, min-max normalised to [0, 1]) with an MSE loss (Adam, lr 1.5e-3, batch 60,
200 epochs); it is scored by a song classifier on the reconstructions and by listeners.

What this stage does: the same kind of CNN (``encoders.eeg2mel.EEG2Mel``) regresses the cached mels
(``batch["mel"]``, ``[B, n_mels, n_frames]``, the same mels every stage uses) after a per-mel-bin
standardisation with the training split's mean and standard deviation (computed once at fit start from
the train loader, over at most ``mel_stats_batches`` batches, and stored in the checkpoint):

    loss = mel_weight * MSE(mel_pred, (mel - mean) / std) + clip_weight * InfoNCE(head(embedding), CLAP)

The InfoNCE term (``clip_weight > 0``) trains the inherited head on the 128-d embedding into the CLAP
space, so ``test`` scores identification (id50, song14, ...) exactly as the alignment stage does and
writes the same ``metrics.json``. ``test`` adds ``mel_mse`` (per item, normalised units) and ``mel_id50``
(50-way identification of the heard segment by cosine between the predicted and the true normalised mels,
the paper's reconstruction compared in mel space). With ``clip_weight=0`` the model is the paper's pure
regressor and only the ``mel_*`` metrics are meaningful.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from chanmusic.results.metrics_file import metric_entry
from chanmusic.stages.align import AlignModule
from chanmusic.modules.losses import clip_loss
from chanmusic.evaluation.metrics import Identification, reset_metric, summarize

log = logging.getLogger("chanmusic")


class EEG2MelModule(AlignModule):
    """EEG2Mel encoder (injected) trained on the cached mels, optionally also aligned to CLAP.

    Args:
        encoder: an encoder with ``forward_all(eeg, mask) -> (EncoderOutput, mel)``, ``n_mels``, ``n_frames``
            (``encoders.eeg2mel.EEG2Mel``).
        clap_dim: CLAP embedding size (linked from the data module).
        mel_weight, clip_weight: weights of the mel MSE and of the InfoNCE to CLAP.
        mel_stats_batches: train batches used for the mel normalisation statistics.
        head, head_hidden, lr, ...: as in ``chanmusic.stages.align.AlignModule`` (defaults: linear head, lr 1.5e-3
            as the paper's Adam; AdamW with cosine decay as the alignment stage).
    """

    def __init__(
        self,
        encoder: nn.Module,
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
        init_encoder_from: str | None = None,
        channel_dropout: float = 0.0,
        channel_dropout_mode: str = "random",
        id_repeats: int = 10,
        id_seed: int = 0,
    ):
        super().__init__(encoder, clap_dim, head, head_hidden, lr, weight_decay, warmup_steps, temperature_init,
                         learn_temperature, freeze_encoder, init_encoder_from, channel_dropout,
                         channel_dropout_mode, id_repeats, id_seed)
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
        self._check_mel(batch["mel"])
        if not bool(self.mel_stats_ready):
            if not train:
                raise RuntimeError("EEG2Mel: mel statistics are not set (train first or load a trained checkpoint)")
            self.set_mel_stats([batch["mel"]])
        mask = batch["channel_mask"]
        if train:
            mask = self.channel_dropout(mask)
        out, mel_pred = self.encoder.forward_all(batch["eeg"], mask)
        emb = self.head(out)
        target = self.normalise_mel(batch["mel"])
        mel_loss = F.mse_loss(mel_pred.float(), target)
        loss = self.hparams.mel_weight * mel_loss
        stage = "train" if train else ("test" if self._trainer is not None and self._trainer.testing else "val")
        if self.hparams.clip_weight > 0:
            align = clip_loss(self._gather(emb), self._gather(batch["clap"]), self.logit_scale)
            loss = loss + self.hparams.clip_weight * align
            self._log(f"{stage}/clip_loss", align, batch)
        self._log(f"{stage}/mel_loss", mel_loss, batch)
        self._last_mel = (mel_pred.detach(), target)
        return loss, emb

    def _log(self, name: str, value: Tensor, batch: dict[str, Any]) -> None:
        if self._trainer is not None:
            self.log(name, value, batch_size=len(batch["eeg"]), sync_dist=not name.startswith("train"))

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        pred, target = self._last_mel
        self._mel_mse.append((pred - target).pow(2).flatten(1).mean(1).cpu())
        self.mel_id.update(pred.flatten(1), target.flatten(1), batch["music"], batch["song"], batch["genre"],
                           batch["stimulus"], batch["start"], batch["length"])

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
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

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        out = super().predict_step(batch, batch_idx)
        _, mel = self.encoder.forward_all(batch["eeg"], batch["channel_mask"])
        out["mel"] = mel * self.mel_std[:, None] + self.mel_mean[:, None]  # back in the cache's mel units
        return out

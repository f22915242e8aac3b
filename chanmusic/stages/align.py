"""Alignment stage: EEG encoder + head trained to the cached CLAP embeddings with symmetric InfoNCE."""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from chanmusic.modules.channel_dropout import ChannelDropout
from chanmusic.stages.encoder_init import load_encoder_weights
from chanmusic.modules.heads import build_head, readout_channel_map
from chanmusic.modules.losses import clip_loss
from chanmusic.modules.optim import OptimRecipe, adamw_recipe, adamw_warmup_cosine, total_steps
from chanmusic.evaluation.collapse import EmbeddingSpread, metrics_entries
from chanmusic.evaluation.metrics import MetricUnavailable, reset_metric
from chanmusic.evaluation.provenance import ProvenanceCallback, run_provenance
from chanmusic.results.metrics_file import METRICS_FILE, merge_metrics, metric_entry
from chanmusic.results.registry import ALIGN, paper_names, test_metrics

log = logging.getLogger("chanmusic")


class AlignModule(L.LightningModule):
    """EEG encoder (injected) + head -> CLAP space, symmetric InfoNCE with a learnable temperature.

    Args:
        encoder: any ``encoders.base.EEGEncoder`` (YAML ``class_path``).
        clap_dim: CLAP embedding size (linked from the data module).
        head: ``temporal`` (the authors' StatHead over present tokens), ``mlp`` (mean of present tokens),
            ``linear`` (mean of the readout source -> Linear), ``attention`` (learned queries over present
            tokens); see ``chanmusic.modules.heads``. No head ever reads a removed channel as zeros.
        head_hidden: hidden width of the head.
        lr, weight_decay, warmup_steps: AdamW with linear warmup then cosine decay over the run.
        temperature_init: initial softmax temperature (logit scale = log(1/T)), clamped to ≤ 100.
        learn_temperature: learn the logit scale.
        freeze_encoder: keep the encoder fixed (eval mode, no gradients): the ablation "encoder fixed". An error
            without weights to freeze (no ``init_encoder_from`` and no ``weights_source`` on the encoder).
        init_encoder_from: checkpoint (pretrain or align) whose encoder weights initialise the encoder.
        channel_dropout: fraction of channels removed per training sample (structured channel dropout).
        channel_dropout_mode: see ``chanmusic.modules.channel_dropout.ChannelDropout``.
        id_repeats, id_seed: repeats and seed of the identification metrics.
        recipe: the encoder's own fine-tuning recipe as parameter groups (``chanmusic.modules.optim.OptimRecipe``:
            encoder / head learning rates, layer-wise decay, warm-up fraction, ...); ``None``: one learning rate.

    Test also measures the spread of the test embeddings (``chanmusic.evaluation.collapse``): ``embedding_spread``
    and ``embedding_rank`` in ``metrics.json`` and TensorBoard, and a warning when they have collapsed.
        init_encoder_weights: which encoder of a pretraining checkpoint: ``teacher`` (default, the EMA
            teacher DINO evaluates) or ``student`` (``chanmusic.stages.encoder_init``).
        readout: what the head reads: ``pooled``, ``tokens`` or ``cls+tokens`` (``None``: the head's default).
        head_queries: learned queries of the ``attention`` head.
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
        channel_dropout_mode: str = "cluster",
        id_repeats: int = 10,
        id_seed: int = 0,
        recipe: dict[str, Any] | None = None,
        init_encoder_weights: str = "teacher",
        readout: str | None = None,
        head_queries: int = 8,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["encoder"])
        self.recipe = OptimRecipe.from_dict(recipe) if recipe is not None else None
        self.encoder = encoder
        # an encoder that loaded its own weights (an official checkpoint) says so with a ``weights_source`` attribute
        if freeze_encoder and not init_encoder_from and not getattr(encoder, "weights_source", None):
            raise ValueError("model.freeze_encoder: true with no weights to freeze (init_encoder_from is empty) — "
                             "pass --model.init_args.init_encoder_from CKPT, or set freeze_encoder: false")
        if init_encoder_from:
            load_encoder_weights(self.encoder, init_encoder_from, init_encoder_weights)
        self.head = build_head(head, encoder.embed_dim, clap_dim, head_hidden, readout, head_queries,
                               getattr(encoder, "n_tokens", None))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature_init)),
                                        requires_grad=learn_temperature)
        # cluster mode needs electrode positions: the encoder knows its channel names (linked from the data)
        self.channel_dropout = ChannelDropout(channel_dropout, channel_dropout_mode,
                                              ch_names=getattr(encoder, "ch_names", None))
        if freeze_encoder:
            self.encoder.requires_grad_(False)
            gain = getattr(self.encoder, "channel_gain", None)
            if gain is not None:  # alignment-only (no pretraining has it: encoders.token_gain): it trains as the head
                gain.requires_grad_(True)
        # the registry's test metrics of this stage (chanmusic.results.registry), in its order
        self._test_specs = {s.name: s for s in test_metrics(ALIGN)}
        hp = {**self.hparams, "id_repeats": id_repeats, "id_seed": id_seed}
        self.test_metrics = nn.ModuleDict({name: s.build(hp) for name, s in self._test_specs.items()})
        self.test_spread = EmbeddingSpread()
        self.test_encoder_spread = EmbeddingSpread()  # of the encoder's pooled output: collapsed before the head?

    # ---- forward -------------------------------------------------------------------------------
    def embed(self, eeg: Tensor, channel_mask: Tensor | None = None) -> Tensor:
        """EEG ``[B, C, T]`` -> CLAP-space embedding ``[B, clap_dim]`` (not normalised)."""
        out = self.encoder(eeg, channel_mask)
        self._pooled = out.pooled.detach()  # read by test_step (the encoder's spread)
        return self.head(out)

    def forward(self, eeg: Tensor, channel_mask: Tensor | None = None) -> Tensor:
        return self.embed(eeg, channel_mask)

    @torch.no_grad()
    def channel_map(self, eeg: Tensor, channel_mask: Tensor | None = None) -> tuple[Tensor | None, str]:
        """Per-electrode share ``[B, C]`` of the readout this model uses, and its kind
        (``chanmusic.modules.heads.readout_channel_map``): the scalp maps."""
        out = self.encoder(eeg, channel_mask)
        return readout_channel_map(self.head, self.encoder, out, eeg, channel_mask)

    def on_train_epoch_start(self) -> None:
        if self.hparams.freeze_encoder:
            self.encoder.eval()

    def _step(self, batch: dict[str, Any], train: bool) -> tuple[Tensor, Tensor]:
        mask = batch["channel_mask"]
        if train:
            mask = self.channel_dropout(mask)
        emb = self.embed(batch["eeg"], mask)
        e, a = self._gather(emb), self._gather(batch["clap"])
        music = self._gather(batch["music"], grads=False) if "music" in batch else None  # same music: no negative
        loss = clip_loss(e, a, self.logit_scale, music)
        return loss, emb

    def _gather(self, x: Tensor, grads: bool = True) -> Tensor:
        """All ranks' rows with gradients flowing back to this rank's (``[W*B, D]``; identity on one device)."""
        if self._trainer is None or self.trainer.world_size == 1:
            return x
        g = self.all_gather(x, sync_grads=grads)
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
        for name, m in self.test_metrics.items():
            self._test_specs[name].update(m, emb, batch)
        self.test_spread.update(emb)
        pooled = self.__dict__.pop("_pooled", None)  # set by embed (a subclass may embed otherwise)
        if pooled is not None:
            self.test_encoder_spread.update(pooled)

    def on_test_epoch_end(self) -> None:
        results: dict[str, dict[str, Any] | None] = {}
        reasons: dict[str, str] = {}
        for name, m in self.test_metrics.items():
            try:
                results[name] = metric_entry(m.compute())
                self.log(f"test/{name}", results[name]["mean"], rank_zero_only=True)
            except MetricUnavailable as e:  # cannot be formed on this data: null with its reason, never a crash
                results[name], reasons[name] = None, str(e)
                log.warning("%s not computed: %s", name, e)
            reset_metric(m)
        # the paper's names: written as their metric where the count matches the paper (the pool), else null
        for spec, paper in paper_names():
            if spec.name not in self.test_metrics:
                continue
            name, n_way, r = spec.name, paper.n_way, results.get(spec.name)
            if r is not None and r["n_way"] == n_way:
                results[paper.name] = dict(r)
            else:
                results[paper.name] = None
                reasons[paper.name] = (f"{n_way}-way as in the paper needs NMED-T + NMED-H pooled; here {name} is "
                                       + (f"{r['n_way']}-way (see {name})" if r else f"null ({reasons.get(name)})"))
        spread = {k: v.item() for k, v in self.test_spread.compute().items()}
        results.update(metrics_entries(spread))
        enc = None
        if self.test_encoder_spread.update_called:
            enc = {k: v.item() for k, v in self.test_encoder_spread.compute().items()}
            results.update(metrics_entries(enc, prefix="encoder"))
        self.test_spread.reset()
        self.test_encoder_spread.reset()
        for name in ("embedding_spread", "embedding_rank", "encoder_spread", "encoder_rank"):
            if name in results:
                self.log(f"test/{name}", results[name]["mean"], rank_zero_only=True)
        if results["embedding_spread"]["collapsed"]:
            log.warning("test embeddings have COLLAPSED: mean pairwise 1 - cos %.2g, effective rank %.2f%s "
                        "(chanmusic.evaluation.collapse)", spread["spread"], spread["rank"],
                        "" if enc is None else f"; the encoder's pooled output: {enc['spread']:.2g}, {enc['rank']:.2f}")
        self.write_metrics(results, reasons)

    def write_metrics(self, results: dict[str, dict[str, Any] | None],
                      reasons: dict[str, str] | None = None) -> Path | None:
        """Merge ``results`` into ``metrics.json`` in the run's log directory (rank 0 only; the one writer,
        :func:`chanmusic.results.metrics_file.merge_metrics`, with this test's provenance).

        Call it on every rank: ``trainer.log_dir`` is a broadcast under DDP, so asking for it on rank 0 only
        would pair with the next collective of the other ranks (and hang or crash them).
        """
        if self.trainer is None:
            return None
        out_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        if not self.trainer.is_global_zero:
            return None
        # run_provenance: what a test run was made from (evaluation.provenance); None outside a test
        self.metrics_path = merge_metrics(out_dir / METRICS_FILE, results, reasons, run_provenance(self.trainer))
        return self.metrics_path

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        emb = self.embed(batch["eeg"], batch["channel_mask"])
        return {"embedding": emb, **{k: batch[k] for k in ("clap", "song", "subject", "segment", "music")}}

    # ---- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self):
        """AdamW (no decay on 1-D parameters), linear warmup then cosine decay (``chanmusic.modules.optim``); with a
        ``recipe``, its parameter groups (per-group learning rates, layer-wise decay) under the same schedule."""
        hp = self.hparams
        if self.recipe is not None:
            return adamw_recipe(self.named_parameters(), hp.lr, hp.weight_decay, hp.warmup_steps, total_steps(self),
                                self.recipe, self.encoder)
        return adamw_warmup_cosine(self.parameters(), hp.lr, hp.weight_decay, hp.warmup_steps, total_steps(self))

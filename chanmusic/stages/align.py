"""Alignment: the stage that trains an aligned model (``chanmusic.modules.aligned``) to the cached CLAP embeddings
with symmetric InfoNCE, and the aligned-space test metrics (:class:`AlignedTestMetrics`, :func:`write_metrics`) that
every stage holding an aligned model reports (alignment, EEG2Mel, reconstruction)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import Metric

from encoders.base import EEGEncoder
from chanmusic.core.renamed import renamed
from chanmusic.evaluation.collapse import EmbeddingSpread, metrics_entries
from chanmusic.evaluation.metrics import MetricUnavailable, reset_metric
from chanmusic.evaluation.provenance import ProvenanceCallback, run_provenance
from chanmusic.modules.aligned import AlignedModel, HoldsAlignedModel, hold
from chanmusic.modules.channel_dropout import ChannelDropout
from chanmusic.modules.optim import OptimRecipe, adamw_recipe, adamw_warmup_cosine, total_steps
from chanmusic.results.items_file import FACTS, ITEMS_FILE, write_items
from chanmusic.results.metrics_file import METRICS_FILE, merge_metrics, metric_entry
from chanmusic.results.registry import ALIGN, REGISTRY, paper_names, test_metrics
from chanmusic.stages.init_from import check_init_split, load_init_from
from chanmusic.stages.resume import resume_at_train_start, save_rng, saved_rng

log = logging.getLogger("chanmusic")
VAL_METRICS = ("song_id", "id50")  #: identifications logged on the validation split every epoch (val/<name>)
VAL_REPEATS = 3  #: distractor draws of the validation identifications (a curve, not a result)


class ItemFacts(Metric):
    """The facts of each test item (window id, recording, subject, song, stimulus, music span), kept across
    processes like the identifications' states: the left-hand columns of ``items.csv``."""

    full_state_update = False
    KEYS = ("segment", "recording", "subject", "song", "stimulus", "start", "length")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for k in self.KEYS:
            self.add_state(k, default=[], dist_reduce_fx="cat")

    def update(self, batch: dict[str, Any]) -> None:
        n = len(batch["segment"])
        for k in self.KEYS:
            v = batch.get(k, torch.full((n,), -1))
            getattr(self, k).append(torch.as_tensor(v, device=self.device).long().reshape(-1))

    def compute(self) -> dict[str, np.ndarray]:
        """Each window once, in segment order (as the identifications order them)."""
        cols = {k: (torch.cat(v) if isinstance(v, list) else v).cpu().numpy() for k in self.KEYS
                for v in [getattr(self, k)]}
        _, keep = np.unique(cols["segment"], return_index=True)
        return {k: v[keep] for k, v in cols.items()}


class AlignedTestMetrics(nn.Module):
    """The aligned-space test metrics: the registry's metrics of the alignment stage
    (:func:`chanmusic.results.registry.test_metrics`, written also under the paper's names where their count is the
    paper's) and the spread of the test embeddings and of the encoder's pooled output
    (``chanmusic.evaluation.collapse``).

    Args:
        id_repeats, id_seed: repeats and seed of the identification draws.
    """

    def __init__(self, id_repeats: int = 10, id_seed: int = 0):
        super().__init__()
        self.specs = {spec.name: spec for spec in test_metrics(ALIGN)}
        hp = {"id_repeats": id_repeats, "id_seed": id_seed}
        self.identification = nn.ModuleDict({name: spec.build(hp) for name, spec in self.specs.items()})
        self.spread = EmbeddingSpread()
        self.encoder_spread = EmbeddingSpread()  # of the encoder's pooled output: collapsed before the head?
        self.facts = ItemFacts()
        self.items: dict[str, Any] | None = None  # after compute(): the per-item table's columns (write_metrics)

    def update(self, emb: Tensor, batch: dict[str, Any], pooled: Tensor | None = None) -> None:
        """One test batch: its embeddings ``[B, clap_dim]`` and (when known) the encoder's pooled output."""
        if "segment" in batch:
            self.facts.update(batch)
        for name, m in self.identification.items():
            self.specs[name].update(m, emb, batch)
        self.spread.update(emb)
        if pooled is not None:
            self.encoder_spread.update(pooled)

    def reset(self) -> None:
        for m in self.identification.values():
            m.reset()

    def compute(self, log_metric: Callable[[str, float], None]) -> tuple[dict[str, dict[str, Any] | None],
                                                                          dict[str, str]]:
        """``(results, reasons)`` of the epoch, each result logged as ``test/<name>``; a metric that cannot be
        formed on this data is ``None`` with its reason (never a crash). Resets every metric."""
        results: dict[str, dict[str, Any] | None] = {}
        reasons: dict[str, str] = {}
        per_item: dict[str, dict[str, np.ndarray]] = {}
        for name, m in self.identification.items():
            try:
                results[name] = metric_entry(m.compute())
                log_metric(f"test/{name}", results[name]["mean"])
                if getattr(m, "last_items", None) is not None:  # identifications: per-item hits and ranks
                    per_item[name] = m.last_items
            except MetricUnavailable as e:  # cannot be formed on this data: null with its reason, never a crash
                results[name], reasons[name] = None, str(e)
                log.warning("%s not computed: %s", name, e)
            reset_metric(m)
        self.items = None
        if self.facts.update_called:
            self.items = {"facts": self.facts.compute(), "metrics": per_item}
            reset_metric(self.facts)
        # the paper's names: written as their metric where the count matches the paper (the pool), else null
        for spec, paper in paper_names():
            if spec.name not in self.identification:
                continue
            name, n_way, r = spec.name, paper.n_way, results.get(spec.name)
            if r is not None and r["n_way"] == n_way:
                results[paper.name] = dict(r)
            else:
                results[paper.name] = None
                reasons[paper.name] = (f"{n_way}-way as in the paper needs NMED-T + NMED-H pooled; here {name} is "
                                       + (f"{r['n_way']}-way (see {name})" if r else f"null ({reasons.get(name)})"))
        spread = {k: v.item() for k, v in self.spread.compute().items()}
        results.update(metrics_entries(spread))
        enc = None
        if self.encoder_spread.update_called:
            enc = {k: v.item() for k, v in self.encoder_spread.compute().items()}
            results.update(metrics_entries(enc, prefix="encoder"))
        self.spread.reset()
        self.encoder_spread.reset()
        for name in ("embedding_spread", "embedding_rank", "encoder_spread", "encoder_rank"):
            if name in results:
                log_metric(f"test/{name}", results[name]["mean"])
        if results["embedding_spread"]["collapsed"]:
            log.warning("test embeddings have COLLAPSED: mean pairwise 1 - cos %.2g, effective rank %.2f%s "
                        "(chanmusic.evaluation.collapse)", spread["spread"], spread["rank"],
                        "" if enc is None else f"; the encoder's pooled output: {enc['spread']:.2g}, {enc['rank']:.2f}")
        return results, reasons


def write_metrics(trainer: Any, results: dict[str, dict[str, Any] | None],
                  reasons: dict[str, str] | None = None) -> Path | None:
    """Merge ``results`` into ``metrics.json`` in the run's log directory (rank 0 only; returns its path there) through
    :func:`chanmusic.results.metrics_file.merge_metrics`; a ``None`` result is written as ``null`` with its reason.

    Call it on every rank: ``trainer.log_dir`` is a broadcast under DDP, so asking for it on rank 0 only
    would pair with the next collective of the other ranks (and hang or crash them).
    """
    if trainer is None:
        return None
    out_dir = Path(trainer.log_dir or trainer.default_root_dir)
    if not trainer.is_global_zero:
        return None
    # the one writer (chanmusic.results.metrics_file), with what a test run was made from (evaluation.provenance)
    path = merge_metrics(out_dir / METRICS_FILE, results, reasons, run_provenance(trainer))
    write_test_items(trainer, out_dir)
    return path


def write_test_items(trainer: Any, out_dir: Path) -> Path | None:
    """``items.csv`` beside ``metrics.json`` (:mod:`chanmusic.results.items_file`) from the stage's
    :class:`AlignedTestMetrics` (``test_metrics``), when its last ``compute()`` saw per-item facts; dataset names
    from the data module's cache."""
    tm = getattr(getattr(trainer, "lightning_module", None), "test_metrics", None)
    items = getattr(tm, "items", None)
    if not items:
        return None
    facts = dict(items["facts"])
    cache = getattr(getattr(trainer, "datamodule", None), "cache", None)
    recs = getattr(cache, "recordings", None) or []
    facts["dataset"] = [recs[r]["dataset"] if 0 <= r < len(recs) else "" for r in facts["recording"]]
    return write_items(out_dir / ITEMS_FILE, {k: facts[k] for k in FACTS}, items["metrics"])


def gather_rows(stage: L.LightningModule, x: Tensor, grads: bool = True) -> Tensor:
    """All ranks' rows with gradients flowing back to this rank's (``[W*B, D]``; identity on one device): the
    InfoNCE negatives of every rank."""
    if stage._trainer is None or stage.trainer.world_size == 1:
        return x
    g = stage.all_gather(x, sync_grads=grads)
    return g.flatten(0, 1) if g.dim() == x.dim() + 1 else g


class AlignModule(HoldsAlignedModel, L.LightningModule):
    """Alignment: an aligned model (encoder + head + temperature) trained to CLAP with symmetric InfoNCE; ``test``
    writes the aligned-space metrics (:class:`AlignedTestMetrics`) to ``metrics.json``.

    Args:
        encoder: the EEG encoder (any ``encoders.base.EEGEncoder``; YAML ``class_path``).
        clap_dim: CLAP embedding size (linked from the data module).
        head: ``temporal``, ``mlp``, ``linear``, ``attention`` or ``weighted`` (``chanmusic.modules.heads``).
        head_hidden: hidden width of the head.
        lr: peak AdamW learning rate (linear warm-up, then cosine decay over the run).
        weight_decay: AdamW weight decay (none on 1-D parameters).
        warmup_steps: linear warm-up steps.
        temperature_init: initial softmax temperature (logit scale log(1/T), clamped to ≤ 100).
        learn_temperature: learn the logit scale.
        freeze_encoder: keep the encoder fixed (ablation "encoder fixed"); needs weights (init_from or the encoder's).
        train_channel_gain: with ``freeze_encoder``, still train the encoder's channel gain (false: it stays fixed
            at its seeded start, so only the head learns — what the "fixed encoder" / "linear probe" rows claim).
        init_from: pretraining or aligned checkpoint whose encoder weights initialise the encoder (docs/stages.md).
        channel_dropout: fraction of electrodes removed per training window (``chanmusic.modules.channel_dropout``).
        channel_dropout_mode: ``cluster`` (neighbouring electrodes) or ``random``.
        id_repeats: repeats of the identification draws.
        id_seed: seed of the identification draws.
        recipe: the encoder's fine-tuning recipe as parameter groups (``chanmusic.modules.optim.OptimRecipe``).
        init_from_encoder: ``teacher`` (default) or ``student`` encoder of a pretraining checkpoint.
        readout: what the head reads: ``pooled``, ``tokens`` or ``cls+tokens`` (null: the head's default).
        head_queries: learned queries / maps of the ``attention`` / ``weighted`` head.
        init_encoder_from: deprecated name of init_from.
        init_encoder_weights: deprecated name of init_from_encoder.
    """

    def __init__(
        self,
        encoder: EEGEncoder,
        clap_dim: int = 512,
        head: str = "mlp",
        head_hidden: int = 512,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_steps: int = 0,
        temperature_init: float = 0.07,
        learn_temperature: bool = True,
        freeze_encoder: bool = False,
        train_channel_gain: bool = True,
        init_from: str | None = None,
        channel_dropout: float = 0.0,
        channel_dropout_mode: str = "cluster",
        id_repeats: int = 10,
        id_seed: int = 0,
        recipe: dict[str, Any] | None = None,
        init_from_encoder: str = "teacher",
        readout: str | None = None,
        head_queries: int = 8,
        init_encoder_from: str | None = None,
        init_encoder_weights: str | None = None,
    ):
        super().__init__()
        init_from = renamed("model.init_args", "init_encoder_from", "init_from", init_encoder_from, init_from, None)
        init_from_encoder = renamed("model.init_args", "init_encoder_weights", "init_from_encoder",
                                    init_encoder_weights, init_from_encoder, "teacher")
        self.save_hyperparameters(ignore=["encoder", "init_encoder_from", "init_encoder_weights"])
        # the CLI saves the config as given: a value read under an old name replaces the new name's default
        self.hparams.update(init_from=init_from, init_from_encoder=init_from_encoder)
        self.recipe = OptimRecipe.from_dict(recipe) if recipe is not None else None
        load_init_from(encoder, init_from, init_from_encoder, freeze_encoder)
        hold(self, "aligned", AlignedModel(encoder, clap_dim, head, head_hidden, readout, head_queries,
                                           temperature_init, learn_temperature))
        # cluster mode needs electrode positions: the encoder knows its channel names (linked from the data)
        self.channel_dropout = ChannelDropout(channel_dropout, channel_dropout_mode,
                                              ch_names=getattr(encoder, "ch_names", None))
        if freeze_encoder:
            self.aligned.freeze_encoder(train_channel_gain)
        self.test_metrics = AlignedTestMetrics(id_repeats, id_seed)
        hp = {"id_repeats": VAL_REPEATS, "id_seed": id_seed}
        self.val_metrics = nn.ModuleDict({k: REGISTRY[k].build(hp) for k in VAL_METRICS if k in REGISTRY})
        self._rng_to_restore: dict[str, Any] | None = None


    def on_train_epoch_start(self) -> None:
        if self.hparams.freeze_encoder:
            self.aligned.encoder.eval()

    def _step(self, batch: dict[str, Any], train: bool) -> tuple[Tensor, Tensor, Tensor]:
        """``(loss, embedding, the encoder's pooled output)`` of a batch."""
        mask = batch["channel_mask"]
        if train:
            mask = self.channel_dropout(mask)
        emb, pooled = self.aligned.embed(batch["eeg"], mask)
        e, a = gather_rows(self, emb), gather_rows(self, batch["clap"])
        music = gather_rows(self, batch["music"], grads=False) if "music" in batch else None  # same music: no negative
        return self.aligned.loss(e, a, music), emb, pooled

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss, _, _ = self._step(batch, train=True)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["eeg"]))
        self.log("train/temperature", self.aligned.temperature, batch_size=len(batch["eeg"]))
        return loss

    # ---- resume: augmentations continue the random stream of the interrupted run (chanmusic.stages.resume) -----
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        save_rng(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_to_restore = saved_rng(checkpoint)

    def on_train_start(self) -> None:
        rng, self._rng_to_restore = self._rng_to_restore, None
        resume_at_train_start(self.trainer, rng)

    def on_fit_start(self) -> None:
        """A pretraining that saw this run's test windows is refused (``chanmusic.stages.init_from``)."""
        dm = getattr(self.trainer, "datamodule", None)
        if self.hparams.init_from and getattr(dm, "split", None) is not None:
            check_init_split(dm, self.hparams.init_from)

    def on_test_start(self) -> None:
        self._rng_to_restore = None  # a checkpoint loaded for testing leaves the RNG alone

    def configure_callbacks(self):
        """Provenance in every checkpoint; ``test`` refuses a split other than the checkpoint's (its module)."""
        return [ProvenanceCallback()]

    def on_before_zero_grad(self, optimizer) -> None:
        self.aligned.clamp_temperature()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        loss, emb, _ = self._step(batch, train=False)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=len(batch["eeg"]))
        if "segment" in batch:
            for name, m in self.val_metrics.items():
                REGISTRY[name].update(m, emb, batch)

    def on_validation_epoch_end(self) -> None:
        """``val/song_id`` and ``val/id50`` of the epoch (a learning curve in retrieval terms; no choice is made on
        them, see the checkpoint rule)."""
        for name, m in self.val_metrics.items():
            if m.update_called:
                try:
                    self.log(f"val/{name}", float(m.compute()["mean"]), rank_zero_only=True)
                except MetricUnavailable:
                    pass  # too few validation windows for this identification (e.g. the sanity check)
            reset_metric(m)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        loss, emb, pooled = self._step(batch, train=False)
        self.log("test/loss", loss, sync_dist=True, batch_size=len(batch["eeg"]))
        self.test_metrics.update(emb, batch, pooled)

    def on_test_epoch_end(self) -> None:
        results, reasons = self.test_metrics.compute(lambda name, v: self.log(name, v, rank_zero_only=True))
        self.write_metrics(results, reasons)

    def write_metrics(self, results: dict[str, dict[str, Any] | None],
                      reasons: dict[str, str] | None = None) -> Path | None:
        """Merge ``results`` into the run's ``metrics.json`` (:func:`write_metrics`; on every rank)."""
        return write_metrics(self.trainer, results, reasons)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        emb = self.embed(batch["eeg"], batch["channel_mask"])
        return {"embedding": emb, **{k: batch[k] for k in ("clap", "song", "subject", "segment", "music")}}

    # ---- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self):
        """AdamW (no decay on 1-D parameters), linear warmup then cosine decay (``chanmusic.modules.optim``); with a
        ``recipe``, its parameter groups (per-group learning rates, layer-wise decay) under the same schedule."""
        hp = self.hparams
        if self.recipe is not None:
            return adamw_recipe(self.aligned.named_parameters(), hp.lr, hp.weight_decay, hp.warmup_steps,
                                total_steps(self), self.recipe, self.aligned.encoder)
        return adamw_warmup_cosine(self.parameters(), hp.lr, hp.weight_decay, hp.warmup_steps, total_steps(self))

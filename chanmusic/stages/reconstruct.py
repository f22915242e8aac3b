"""Reconstruction stage: aligned EEG embedding -> ridge adapter -> CLAP conditioning space -> fixed AudioLDM -> audio.

Pipeline (DESIGN.md; training.md §5-6)::

    EEG window --encoder+head (aligned, frozen)--> e [B, D]
             --RidgeAdapter (fitted on the TRAIN split: e -> raw CLAP embedding of the heard segment)--> c [B, 512]
             --AudioLDM 1 (fixed; c is its FiLM conditioning)--> audio [B, S] @ 16 kHz
             --the same CLAP as the cache / AudioLDM's log-mel--> metrics

``ReconstructModule`` subclasses :class:`chanmusic.stages.align.AlignModule`, so the encoder, head, their initialisation
and the aligned-space metrics (``id50``, ``song14``, ``genre10``, ``within_song``) are the alignment stage's own.
It has nothing to train: ``fit`` stops at once (so runners that call ``fit`` then ``test`` work); everything
happens at the start of ``test`` / ``predict``:

1. the aligned weights are loaded from ``align_checkpoint`` (``encoder.*`` and ``head.*``, strictly);
2. the ridge adapter is fitted on the train split's aligned embeddings -> the **raw** cached CLAP embeddings
   (``dm.cache.clap[music]``, what AudioLDM conditions on; the batches' ``clap`` is the centred alignment target),
   with alpha chosen by exact leave-one-out error on train only, and saved as ``ridge.safetensors`` in the run's
   log directory (``ridge_path`` loads one instead of fitting);
3. ``test``: for every test window the ridge prediction; for the generated ones (all, or ``max_generate`` chosen
   with a seeded draw) AudioLDM audio of the window's length, its CLAP embedding (the cache's CLAP) and log-mel;
   metrics written to ``metrics.json`` beside the alignment metrics, details to ``reconstruct.json``;
4. ``predict``: the generated audio and the true clip per test window, returned for
   :class:`callbacks.audio_writer.AudioPredictionWriter` (wavs + ``predictions/manifest.{csv,json}``).

``oracle=True`` is the audio-oracle reference row: the true (raw) CLAP embedding of each window goes through the
same AudioLDM path; no EEG, checkpoint or ridge is used, so its metrics are an upper bound for the EEG rows. Trivial
invariants of that row: its conditioning *is* the true embedding (a ridge would be the identity), and its numbers
depend only on the audio, AudioLDM and CLAP, never on the encoder in the config.

Metrics (``metrics.json``, each ``{"mean", "std", "n", "chance"}``; see ``chanmusic.evaluation.metrics``):

=================  =====================================================================================================
``id50`` ...       alignment metrics in the aligned space, as the alignment stage writes them (not for the oracle)
``ridge_id50``     50-way identification of the ridge-predicted embedding among the raw CLAP embeddings of test segments
``ridge_cosine``   cosine of the ridge prediction with the raw CLAP embedding (chance: mismatched segments)
``clap_score``     cosine of CLAP(generated audio) with the cached CLAP of the true audio (chance: mismatched segments)
``ssim``, ``psnr`` log-mel (AudioLDM's mel) of generated vs true audio, frames cropped to equal length, each pair
                   min-max scaled jointly to [0, 1], ``data_range=1.0``; PSNR in dB, capped at 100 dB
``gen_id50``,      identification computed from the generated audio's CLAP embedding against the true audio
``gen_song14``,    embeddings of other test segments / songs / genres, as the paper does (candidates: the generated
``gen_genre10``    items' segments). The genre labels are chanmusic's documented 10-genre table (datamodules.songs).
``genre_agreement`` the paper's genre score: a music-genre audio classifier (``genre_classifier``, a local folder or hub
                   id of a transformers audio-classification model, e.g. ``dima806/music_genres_classification``)
                   gives the same label to the generated and the true audio; off unless ``genre_classifier`` is set
=================  =====================================================================================================

Offline honesty: ``audioldm="tiny-random"`` (the default, so the demo runs offline) and a tiny random CLAP make the
generated audio meaningless; ``reconstruct.json`` and the log say so. Real runs name a local AudioLDM folder or hub
id (``cvssp/audioldm-s-full-v2``) and use the CLAP the cache was built with.

This file holds the LightningModule; its pieces live beside it: the ridge numerics in ``chanmusic.stages.ridge``,
the test/predict-start setup in ``chanmusic.stages.reconstruct_setup``, per-window seeded generation in
``chanmusic.stages.generation``, the true clips in ``datamodules.true_audio``, the genre classifier in
``chanmusic.evaluation.genre_classifier`` and the encoder rebuilt from the aligned run's config in
``chanmusic.results.runs``.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from datamodules.true_audio import TrueAudio
from chanmusic.evaluation.genre_classifier import AudioClassifier
from chanmusic.results.metrics_file import metric_entry
from chanmusic.evaluation.metrics import ClapScore, Identification, LabelAgreement, MelPSNR, MelSSIM, reset_metric
from chanmusic.results.runs import encoder_from_config, read_checkpoint, run_config_of
from chanmusic.stages.align import AlignModule
from chanmusic.stages.encoder_init import CheckpointError, load_strict
from chanmusic.stages.generation import generate_windows
from chanmusic.stages.reconstruct_setup import ReconstructSetup
from chanmusic.stages.ridge import DEFAULT_ALPHAS, RidgeAdapter

log = logging.getLogger("chanmusic")

__all__ = ["ReconstructModule", "ENCODER_SOURCES"]

ENCODER_SOURCES = ("auto", "config", "checkpoint")


# ----------------------------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------------------------

class ReconstructModule(ReconstructSetup, AlignModule):
    """Ridge adapter + fixed AudioLDM on top of an aligned EEG encoder; ``test`` -> metrics, ``predict`` -> audio.

    Args:
        encoder: the EEG encoder (YAML ``class_path``; the CLI links the data facts into it). With
            ``encoder_source="auto"`` and an ``align_checkpoint`` whose run folder holds the ``config.yaml``
            LightningCLI saved, the encoder is rebuilt from that file instead (with this run's data facts), so
            the configured one may be a placeholder.
        clap_dim, head, head_hidden, id_repeats, id_seed: as in ``AlignModule``. ``head`` / ``head_hidden`` are
            taken from the checkpoint's hyperparameters when it records them.
        align_checkpoint: checkpoint of the alignment run (Lightning ``.ckpt`` or a plain state dict, loaded with
            ``weights_only=True``); its ``encoder.*`` and ``head.*`` weights are loaded strictly. Required unless
            ``oracle``.
        encoder_source: ``"auto"`` (the aligned run's saved config when found, else the configured encoder),
            ``"config"`` (always the configured encoder), ``"checkpoint"`` (the saved config; an error if absent).
        oracle: the audio-oracle reference: condition AudioLDM on the true raw CLAP embedding (no EEG, no ridge).
        audioldm: AudioLDM 1 pipeline: ``"tiny-random"`` (offline demo, meaningless audio), a local diffusers
            folder or a hub id (``cvssp/audioldm-s-full-v2``). ``audioldm_seed`` seeds the tiny random weights.
        audioldm_dtype: ``None`` (float32) or ``"float16"`` / ``"bfloat16"`` for a real pipeline on a GPU.
        clap, clap_seed: the CLAP that embeds the generated audio. ``None`` (default): the data module's
            (``data.clap`` / ``data.clap_seed``), which is what the cached true embeddings were made with; any other
            value must equal it (CLAP scores across two CLAPs mean nothing).
        check_clap: embed one true clip at start and check it reproduces the cached embedding (cosine ≥ 0.999).
        ridge_alphas: alpha grid of the leave-one-out selection.
        ridge_normalize: L2-normalise the aligned embeddings before the ridge (see :class:`RidgeAdapter`).
        ridge_path: load this ridge file (``ridge.safetensors`` from an earlier run) instead of fitting one.
        num_inference_steps, guidance_scale: DDIM steps and classifier-free guidance of AudioLDM (the authors' code
            uses 100 steps; guidance is diffusers' AudioLDM default, the paper's value is unknown).
        negative: the unconditional embedding under guidance: ``"zeros"`` or ``"empty_text"`` (see
            ``chanmusic.audio.AudioLDMGenerator``).
        audio_length_s: seconds to generate; ``None`` = the EEG window's length (mels are cropped to equal frames).
        generation_seed: seeds the diffusion noise (per window, ``chanmusic.stages.generation.segment_seed``) and
            the ``max_generate`` draw.
        generation_batch_size: windows per AudioLDM call.
        max_generate: generate for at most this many test windows (seeded draw, the same for test and predict;
            ``n`` in the metrics and ``reconstruct.json`` report it); ``None`` = all.
        genre_classifier: folder / hub id of a music-genre audio classifier for ``genre_agreement`` (the paper's
            genre score); ``None`` = off.
    """

    def __init__(
        self,
        encoder: nn.Module,
        clap_dim: int = 512,
        head: str = "mlp",
        head_hidden: int = 512,
        align_checkpoint: str | None = None,
        encoder_source: str = "auto",
        oracle: bool = False,
        audioldm: str = "tiny-random",
        audioldm_seed: int = 0,
        audioldm_dtype: str | None = None,
        clap: str | None = None,
        clap_seed: int | None = None,
        check_clap: bool = True,
        ridge_alphas: Sequence[float] = DEFAULT_ALPHAS,
        ridge_normalize: bool = True,
        ridge_path: str | None = None,
        num_inference_steps: int = 100,
        guidance_scale: float = 2.5,
        negative: str = "zeros",
        audio_length_s: float | None = None,
        generation_seed: int = 0,
        generation_batch_size: int = 16,
        max_generate: int | None = None,
        genre_classifier: str | None = None,
        id_repeats: int = 10,
        id_seed: int = 0,
    ):
        if encoder_source not in ENCODER_SOURCES:
            raise ValueError(f"encoder_source must be one of {ENCODER_SOURCES}, got {encoder_source!r}")
        if max_generate is not None and max_generate < 1:
            raise ValueError("max_generate must be None or >= 1")
        if num_inference_steps < 1:
            raise ValueError("num_inference_steps must be >= 1")
        if audioldm_dtype not in (None, "float32", "float16", "bfloat16"):
            raise ValueError(f"audioldm_dtype must be null, float32, float16 or bfloat16, got {audioldm_dtype!r}")
        state: dict[str, Tensor] | None = None
        hp: dict[str, Any] = {}
        encoder_note = "configured (unused: oracle)" if oracle else "configured"
        if align_checkpoint and not oracle:
            state, hp = read_checkpoint(align_checkpoint)
            for name, configured in (("head", head), ("head_hidden", head_hidden)):
                if hp.get(name) is not None and hp[name] != configured:
                    log.info("reconstruct: %s=%r from %s (configured %r)", name, hp[name], align_checkpoint,
                             configured)
            head = hp.get("head") or head
            head_hidden = hp.get("head_hidden") or head_hidden
            config = run_config_of(align_checkpoint) if encoder_source != "config" else None
            if encoder_source == "checkpoint" and config is None:
                raise CheckpointError(f"encoder_source='checkpoint' but no config.yaml beside {align_checkpoint} "
                                      f"(or in its parent folder)")
            if config is not None:
                encoder = encoder_from_config(config, encoder)
                encoder_note = f"{type(encoder).__name__} from {config}"
                log.info("reconstruct: encoder rebuilt from the aligned run's %s", config)
        readout_hp = {k: hp[k] for k in ("readout", "head_queries") if hp.get(k) is not None}  # the head's shape
        super().__init__(encoder, clap_dim, head, head_hidden, id_repeats=id_repeats, id_seed=id_seed, **readout_hp)
        if state is not None:
            for prefix, module in (("encoder.", self.encoder), ("head.", self.head)):
                sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
                if not sub:
                    raise CheckpointError(f"{align_checkpoint}: no '{prefix}*' weights")
                load_strict(module, sub, f"{align_checkpoint} ({prefix}*)")
            log.info("reconstruct: aligned encoder and head loaded from %s", align_checkpoint)
        elif not oracle:
            log.warning("reconstruct: no align_checkpoint: the encoder and head are UNTRAINED (random); use "
                        "--model.init_args.align_checkpoint RUN/checkpoints/....ckpt")
        self.encoder_note = encoder_note
        self.recon_metrics = nn.ModuleDict({
            "clap_score": ClapScore(), "ssim": MelSSIM(), "psnr": MelPSNR(),
            "gen_id50": Identification(50, "segment", id_repeats, id_seed),
            "gen_song14": Identification(14, "song", id_repeats, id_seed),
            "gen_genre10": Identification(10, "genre", id_repeats, id_seed),
        })
        if not oracle:
            self.recon_metrics["ridge_id50"] = Identification(50, "segment", id_repeats, id_seed)
            self.recon_metrics["ridge_cosine"] = ClapScore()
        if genre_classifier:
            self.recon_metrics["genre_agreement"] = LabelAgreement()
        # loaded at test / predict start, never part of the state dict
        self.ridge: RidgeAdapter | None = None
        self.generator = None
        self.clap_model = None
        self.classifier: AudioClassifier | None = None
        self.true_audio: TrueAudio | None = None
        self._raw_clap: Tensor | None = None
        self._chosen: np.ndarray | None = None
        self._info: dict[str, Any] = {}
        self._last_emb: Tensor | None = None
        self._run_dir: Path | None = None

    # ---- fit: nothing to train ---------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        log.info("reconstruct: nothing to train (the ridge adapter is fitted at test/predict start); fit stops here")
        self.trainer.should_stop = True

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        return None

    def on_train_epoch_start(self) -> None:
        return None

    def configure_optimizers(self):
        return None  # nothing is trained (Lightning runs fit without an optimizer)

    def test_without_checkpoint(self) -> bool:
        """``chanmusic test`` needs no ``--ckpt_path``: the weights come from ``align_checkpoint`` (the oracle has none)."""
        return bool(self.hparams.oracle or self.hparams.align_checkpoint)

    # ---- setup at test / predict start (chanmusic.stages.reconstruct_setup) ----------------------------------
    def on_test_start(self) -> None:
        self._start("test")

    def on_predict_start(self) -> None:
        self._start("predict")

    # ---- generation -------------------------------------------------------------------------------------------
    def _length_s(self, batch: dict[str, Any]) -> float:
        if self.hparams.audio_length_s is not None:
            return float(self.hparams.audio_length_s)
        return float(batch["length"][0]) / float(self.true_audio.sfreq)

    def generate(self, cond: Tensor, segments: Sequence[int], audio_length_s: float) -> np.ndarray:
        """AudioLDM audio ``[B, S]`` (16 kHz) for conditioning ``cond [B, 512]``, one seeded noise per window
        (``chanmusic.stages.generation.generate_windows`` with this stage's generation settings)."""
        hp = self.hparams
        return generate_windows(self.generator, cond, segments, audio_length_s, hp.generation_seed,
                                hp.num_inference_steps, hp.guidance_scale, hp.negative, hp.generation_batch_size)

    def _step(self, batch: dict[str, Any], train: bool) -> tuple[Tensor, Tensor]:
        loss, emb = super()._step(batch, train)
        self._last_emb = emb  # reused by test_step (the encoder runs once per batch)
        return loss, emb

    def _reconstruct(self, batch: dict[str, Any], emb: Tensor | None) -> dict[str, Any]:
        """Conditioning for every window of the batch; audio, CLAP embedding and mel for the chosen ones.

        Runs outside autocast (``--trainer.precision bf16-mixed`` applies to the encoder only): the ridge, AudioLDM
        (in its own ``audioldm_dtype``), CLAP and the mel run in their own precision."""
        with torch.autocast(self.device.type, enabled=False):
            return self._reconstruct_fp(batch, emb)

    def _reconstruct_fp(self, batch: dict[str, Any], emb: Tensor | None) -> dict[str, Any]:
        music = batch["music"].long()
        raw_true = self._raw_clap[music.cpu()].to(self.device)
        cond = raw_true if self.hparams.oracle else self.ridge.predict(emb)
        seg = batch["segment"].long().cpu().numpy()
        sel = np.isin(seg, self._chosen)
        out: dict[str, Any] = {"cond": cond, "raw_true": raw_true, "sel": torch.from_numpy(sel).to(self.device)}
        if sel.any():
            from chanmusic.audio import MEL_SR, log_mel

            t0 = time.time()
            audio = self.generate(cond[out["sel"]], seg[sel].tolist(), self._length_s(batch))
            t1 = time.time()
            out["audio"] = audio
            out["gen_emb"] = self.clap_model.embed(audio, MEL_SR).to(self.device)
            out["gen_mel"] = log_mel(torch.from_numpy(audio), MEL_SR).to(self.device)
            self._info["seconds"]["generate"] += t1 - t0
            self._info["seconds"]["embed_and_metrics"] += time.time() - t1
        return out

    # ---- test ---------------------------------------------------------------------------------------------------
    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        emb = None
        if not self.hparams.oracle:
            super().test_step(batch, batch_idx)  # aligned-space metrics (id50, song14, ...) + test/loss
            emb = self._last_emb
        r = self._reconstruct(batch, emb)
        keys = ("music", "song", "genre", "stimulus", "start", "length", "segment")
        if not self.hparams.oracle:
            self.recon_metrics["ridge_id50"].update(r["cond"], r["raw_true"], *(batch[k] for k in keys))
            self.recon_metrics["ridge_cosine"].update(r["cond"], r["raw_true"], batch["music"], batch["segment"])
        if "audio" not in r:
            return
        t0 = time.time()
        s = r["sel"]
        sub = {k: batch[k][s] for k in keys}
        true = r["raw_true"][s]
        m = self.recon_metrics
        m["clap_score"].update(r["gen_emb"], true, sub["music"], sub["segment"])
        m["ssim"].update(r["gen_mel"], batch["mel"][s], sub["segment"])
        m["psnr"].update(r["gen_mel"], batch["mel"][s], sub["segment"])
        for name in ("gen_id50", "gen_song14", "gen_genre10"):
            m[name].update(r["gen_emb"], true, *(sub[k] for k in keys))
        if self.classifier is not None:
            from chanmusic.audio import MEL_SR

            clips = self.true_audio.clips(sub["music"].tolist())
            m["genre_agreement"].update(self.classifier.labels(r["audio"], MEL_SR),
                                        self.classifier.labels(clips, self.true_audio.sr), sub["segment"])
        self._info["seconds"]["embed_and_metrics"] += time.time() - t0

    def on_test_epoch_end(self) -> None:
        if not self.hparams.oracle:
            try:
                super().on_test_epoch_end()  # writes the alignment metrics to metrics.json
            except ValueError as e:  # e.g. a test split too small for within_song: keep the reconstruction metrics
                log.warning("reconstruct: alignment metrics not computed: %s", e)
                for m in self.test_metrics.values():
                    m.reset()
        results: dict[str, dict[str, Any]] = {}
        single = self._trainer is None or self.trainer.world_size == 1
        for name, metric in self.recon_metrics.items():
            if single and not metric.update_called:
                continue
            try:
                r = {k: v.item() for k, v in metric.compute().items()}
            except ValueError as e:  # e.g. too few generated songs for an identification
                log.warning("reconstruct: %s not computed: %s", name, e)
                reset_metric(metric)
                continue
            metric.reset()
            results[name] = metric_entry(r)  # mean, n, n_way, chance, ci95 (bootstrap over items)
            self.log(f"test/{name}", results[name]["mean"], rank_zero_only=True)
        self.write_metrics(results)
        self._write_info(results)

    def _write_info(self, results: dict[str, Any]) -> None:
        out = self._run_dir
        if out is None or not self.trainer.is_global_zero:
            return
        info = dict(self._info)
        info["seconds"] = {k: round(v, 3) for k, v in info["seconds"].items()}
        info["metrics"] = sorted(results)
        out.mkdir(parents=True, exist_ok=True)
        (out / "reconstruct.json").write_text(json.dumps(info, indent=2))

    # ---- predict ------------------------------------------------------------------------------------------------
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """For the chosen windows of the batch: generated and true audio (numpy ``[b, S]`` at 16 kHz) and one
        metadata dict each (``segment, subject, song, song_name, genre, stimulus, music, start_s, length_s,
        clap_score``). Written by :class:`callbacks.audio_writer.AudioPredictionWriter`."""
        from chanmusic.audio import MEL_SR
        from datamodules.songs import SONGS

        emb = None if self.hparams.oracle else self.embed(batch["eeg"], batch["channel_mask"])
        r = self._reconstruct(batch, emb)
        if "audio" not in r:
            return {"sr": MEL_SR, "generated": np.zeros((0, 0), np.float32), "true": np.zeros((0, 0), np.float32),
                    "meta": []}
        s = r["sel"]
        music = batch["music"][s].tolist()
        score = F.cosine_similarity(r["gen_emb"], r["raw_true"][r["sel"]], dim=-1).tolist()
        sfreq = self.true_audio.sfreq
        meta = []
        for i, m in enumerate(music):
            song = int(batch["song"][s][i])
            meta.append({"segment": int(batch["segment"][s][i]), "subject": int(batch["subject"][s][i]),
                         "song": song, "song_name": f"{SONGS[song].title} – {SONGS[song].artist}",
                         "genre": SONGS[song].genre, "stimulus": self.true_audio.stimulus(m), "music": int(m),
                         "start_s": round(int(batch["start"][s][i]) / sfreq, 6),
                         "length_s": round(int(batch["length"][s][i]) / sfreq, 6), "clap_score": float(score[i])})
        return {"sr": MEL_SR, "generated": r["audio"], "true": self.true_audio.clips(music), "meta": meta}

    def prediction_info(self) -> dict[str, Any]:
        """Run facts for the prediction manifest (models, randomness, seeds, counts)."""
        keep = ("oracle", "align_checkpoint", "encoder", "audioldm", "audioldm_is_random", "clap", "clap_is_random",
                "num_inference_steps", "guidance_scale", "generation_seed", "max_generate", "n_test", "n_generated",
                "ridge_file")
        return {k: self._info.get(k) for k in keep}

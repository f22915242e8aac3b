"""Reconstruction stage: aligned EEG embedding -> ridge adapter -> CLAP conditioning space -> fixed AudioLDM -> audio.

It holds the aligned model of an alignment run (``init_from``, an aligned checkpoint; ``chanmusic.stages.init_from``)
and trains nothing: at the start of ``test`` / ``predict`` it fits the ridge adapter on the train split
(``chanmusic.stages.adapter``) and loads AudioLDM and the cache's CLAP (``chanmusic.stages.generation``); ``test``
writes the aligned-space and reconstruction metrics, ``predict`` the audio. ``oracle`` conditions AudioLDM on the true
CLAP embedding instead (the upper-bound row). The pipeline and every metric: docs/stages.md.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from encoders.base import EEGEncoder
from chanmusic.core.renamed import renamed
from chanmusic.core.ridge import DEFAULT_ALPHAS, RidgeAdapter
from datamodules.true_audio import TrueAudio
from chanmusic.evaluation.genre_classifier import AudioClassifier
from chanmusic.evaluation.provenance import ProvenanceCallback
from chanmusic.modules.aligned import AlignedModel, HoldsAlignedModel, hold
from chanmusic.stages.adapter import RIDGE_FILE, fit_adapter
from chanmusic.stages.align import AlignedTestMetrics, gather_rows, write_metrics
from chanmusic.stages.generation import check_clap, chosen_windows, generate_windows, load_generator, log_clips
from chanmusic.stages.init_from import ENCODER_SOURCES, load_aligned, read_aligned
from chanmusic.stages.reconstruction_metrics import ReconstructionMetrics

log = logging.getLogger("chanmusic")

__all__ = ["ReconstructModule", "ENCODER_SOURCES"]


class ReconstructModule(HoldsAlignedModel, L.LightningModule):
    """Ridge adapter + fixed AudioLDM on top of an aligned model; ``test`` -> metrics, ``predict`` -> audio.

    Args:
        encoder: the EEG encoder; a placeholder when the aligned run's config.yaml rebuilds it (encoder_source auto).
        clap_dim: CLAP embedding size (linked from the data module).
        head: the aligned model's head (the checkpoint's, when it records one).
        head_hidden: the head's hidden width (the checkpoint's, when it records one).
        init_from: the aligned checkpoint (alignment / EEG2Mel run); its encoder.* and head.* load strictly.
        encoder_source: ``auto`` (the aligned run's config.yaml when found), ``config`` or ``checkpoint``.
        oracle: the audio-oracle row: condition AudioLDM on the true raw CLAP embedding (no EEG, no ridge).
        audioldm: AudioLDM 1 pipeline: ``tiny-random`` (offline, meaningless audio), a diffusers folder or hub id.
        audioldm_seed: seed of the tiny random AudioLDM weights.
        audioldm_dtype: null (float32), ``float16`` or ``bfloat16`` for a real pipeline on a GPU.
        clap: the CLAP that embeds the generated audio; null: the data module's (anything else must equal it).
        clap_seed: that CLAP's seed; null: the data module's.
        check_clap: at start, require one true clip's CLAP embedding to reproduce the cached one.
        ridge_alphas: alpha grid of the leave-one-out selection.
        ridge_normalize: L2-normalise the aligned embeddings before the ridge.
        ridge_path: a ridge.safetensors of an earlier run to load instead of fitting one.
        num_inference_steps: AudioLDM's DDIM steps (the authors' code: 100).
        guidance_scale: classifier-free guidance (diffusers' AudioLDM default; the paper's value is unknown).
        negative: the unconditional embedding under guidance: ``zeros`` or ``empty_text``.
        audio_length_s: seconds to generate; null: the EEG window's length.
        generation_seed: seeds each window's diffusion noise and the max_generate draw.
        generation_batch_size: windows per AudioLDM call.
        max_generate: generate for at most this many test windows (a seeded draw); null: all.
        genre_classifier: folder / hub id of a music-genre audio classifier for genre_agreement; null: off.
        id_repeats: repeats of the identification draws.
        id_seed: seed of the identification draws.
        audio_clips: generated and true audio of this many chosen test windows to TensorBoard (0: none).
        align_checkpoint: deprecated name of init_from.
    """

    def __init__(
        self,
        encoder: EEGEncoder,
        clap_dim: int = 512,
        head: str = "mlp",
        head_hidden: int = 512,
        init_from: str | None = None,
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
        audio_clips: int = 4,
        align_checkpoint: str | None = None,
    ):
        super().__init__()
        init_from = renamed("model.init_args", "align_checkpoint", "init_from", align_checkpoint, init_from, None)
        if encoder_source not in ENCODER_SOURCES:
            raise ValueError(f"encoder_source must be one of {ENCODER_SOURCES}, got {encoder_source!r}")
        if max_generate is not None and max_generate < 1:
            raise ValueError("max_generate must be None or >= 1")
        if num_inference_steps < 1 or audio_clips < 0:
            raise ValueError("num_inference_steps must be >= 1 and audio_clips >= 0")
        if audioldm_dtype not in (None, "float32", "float16", "bfloat16"):
            raise ValueError(f"audioldm_dtype must be null, float32, float16 or bfloat16, got {audioldm_dtype!r}")
        source = None
        head_shape: dict[str, Any] = {}
        self.encoder_note = "configured (unused: oracle)" if oracle else "configured"
        if init_from and not oracle:
            source = read_aligned(init_from, encoder, encoder_source, head, head_hidden)
            encoder, head, head_hidden, head_shape = source.encoder, source.head, source.head_hidden, source.head_shape
            self.encoder_note = source.note
        self.save_hyperparameters(ignore=["encoder", "align_checkpoint"])
        # the CLI saves the config as given: a value read under an old name replaces the new name's default
        self.hparams.update(init_from=init_from)
        hold(self, "aligned", AlignedModel(encoder, clap_dim, head, head_hidden, **head_shape))
        if source is not None:
            load_aligned(self.aligned, source.state, init_from)
            log.info("reconstruct: aligned encoder and head loaded from %s", init_from)
        elif not oracle:
            log.warning("reconstruct: no init_from: the encoder and head are UNTRAINED (random); use "
                        "--model.init_args.init_from ALIGN_RUN/checkpoints/....ckpt")
        self.test_metrics = AlignedTestMetrics(id_repeats, id_seed)
        self.recon_metrics = ReconstructionMetrics(oracle, bool(genre_classifier), id_repeats, id_seed)
        # loaded at test / predict start, never part of the state dict
        self.ridge: RidgeAdapter | None = None
        self.generator = None
        self.clap_model = None
        self.classifier: AudioClassifier | None = None
        self.true_audio: TrueAudio | None = None
        self._raw_clap: Tensor | None = None
        self._chosen: np.ndarray | None = None
        self._info: dict[str, Any] = {}
        self._run_dir: Path | None = None


    @property
    def aligned_checkpoint(self) -> str | None:
        """The aligned checkpoint the weights came from (the provenance of a test run without a ckpt_path)."""
        return self.hparams.init_from

    def configure_callbacks(self):
        """Provenance of the test run (the aligned checkpoint it was made from)."""
        return [ProvenanceCallback()]

    def write_metrics(self, results: dict[str, dict[str, Any] | None],
                      reasons: dict[str, str] | None = None) -> Path | None:
        """Merge ``results`` into the run's ``metrics.json`` (``chanmusic.stages.align.write_metrics``)."""
        return write_metrics(self.trainer, results, reasons)

    # ---- fit: nothing to train ---------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        log.info("reconstruct: nothing to train (the ridge adapter is fitted at test/predict start); fit stops here")
        self.trainer.should_stop = True

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        return None

    def configure_optimizers(self):
        return None  # nothing is trained (Lightning runs fit without an optimizer)

    def test_without_checkpoint(self) -> bool:
        """``chanmusic test`` needs no ``--ckpt_path``: the weights come from ``init_from`` (the oracle has none)."""
        return bool(self.hparams.oracle or self.hparams.init_from)

    # ---- setup at test / predict start ----------------------------------------------------------------------
    def on_test_start(self) -> None:
        self._start("test")

    def on_predict_start(self) -> None:
        self._start("predict")

    def _datamodule(self):
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not hasattr(dm, "dataset_for"):
            raise RuntimeError("ReconstructModule needs the NMEDDataModule: "
                               "trainer.test/predict(model, datamodule=dm)")
        if dm.cache is None:
            dm.setup()
        return dm

    def _start(self, stage: str) -> None:
        """The data module, the true audio, the windows to generate for, AudioLDM / CLAP / the genre classifier, the
        CLAP check and the ridge adapter, with the run facts for ``reconstruct.json``."""
        t0 = time.time()
        hp = self.hparams
        dm = self._datamodule()
        run_dir = (self.trainer.log_dir or self.trainer.default_root_dir) if self._trainer is not None else None
        self._run_dir = Path(run_dir) if run_dir else None  # log_dir is a collective under DDP: asked on every rank
        clap_spec = dm.clap if hp.clap is None else hp.clap
        clap_seed = dm.clap_seed if hp.clap_seed is None else hp.clap_seed
        if (str(clap_spec), int(clap_seed)) != (str(dm.clap), int(dm.clap_seed)):
            raise ValueError(f"model clap={clap_spec!r} (seed {clap_seed}) differs from the CLAP the cache was built "
                             f"with (data.clap={dm.clap!r}, seed {dm.clap_seed}): the CLAP score compares embeddings "
                             f"of one CLAP; leave model.init_args.clap unset")
        self._raw_clap = torch.from_numpy(np.asarray(dm.cache.clap, dtype=np.float32))
        self.true_audio = TrueAudio(dm)
        test_rows = np.asarray(dm.dataset_for("test").rows)
        self._chosen = chosen_windows(test_rows, hp.max_generate, hp.generation_seed)
        self._load_models(clap_spec, clap_seed)
        if hp.check_clap:
            check_clap(self.clap_model, self.true_audio, self._raw_clap,
                       int(dm.dataset_for("test").music[0]) if len(test_rows) else 0)
        ridge_s = 0.0
        if not hp.oracle:
            t1 = time.time()
            self.ridge = RidgeAdapter.load(hp.ridge_path) if hp.ridge_path else fit_adapter(
                self, dm, self.embed, self._raw_clap, hp.clap_dim, hp.ridge_alphas, hp.ridge_normalize)
            ridge_s = time.time() - t1
            if self.ridge.in_dim != hp.clap_dim or self.ridge.out_dim != self._raw_clap.shape[1]:
                raise ValueError(f"ridge maps {self.ridge.in_dim} -> {self.ridge.out_dim}, expected "
                                 f"{hp.clap_dim} -> {self._raw_clap.shape[1]}")
            if self._run_dir is not None and self.trainer.is_global_zero and not hp.ridge_path:
                self.ridge.save(self._run_dir / RIDGE_FILE)
            log.info("reconstruct: ridge alpha %.3g (LOO over %d train windows), %s", self.ridge.alpha,
                     self.ridge.n_train, "loaded from " + hp.ridge_path if hp.ridge_path else "fitted")
        self._info = {
            "stage": stage, "oracle": bool(hp.oracle), "align_checkpoint": hp.init_from,  # its name in the file
            "encoder": self.encoder_note, "audioldm": self.generator.description,
            "audioldm_is_random": bool(self.generator.is_random), "clap": self.clap_model.description,
            "clap_is_random": bool(self.clap_model.is_random), "num_inference_steps": int(hp.num_inference_steps),
            "guidance_scale": float(hp.guidance_scale), "negative": hp.negative, "generation_seed": hp.generation_seed,
            "audio_length_s": hp.audio_length_s, "max_generate": hp.max_generate, "n_test": int(len(test_rows)),
            "n_generated": int(len(self._chosen)), "ridge": self.ridge.summary() if self.ridge is not None else None,
            "ridge_file": None if self.ridge is None else (hp.ridge_path or (
                str(self._run_dir / RIDGE_FILE) if self._run_dir is not None else None)),
            "genre_classifier": hp.genre_classifier,
            "seconds": {"setup": 0.0, "ridge_fit": round(ridge_s, 3), "generate": 0.0, "embed_and_metrics": 0.0},
        }
        self._info["seconds"]["setup"] = round(time.time() - t0, 3)
        if self.generator.is_random or self.clap_model.is_random:
            log.warning("reconstruct: %s / %s — the generated audio and its scores carry no pretrained meaning",
                        self.generator.description, self.clap_model.description)

    def _load_models(self, clap_spec: str, clap_seed: int) -> None:
        from chanmusic.audio import load_clap

        hp = self.hparams
        self.generator = load_generator(self.generator, hp.audioldm, hp.audioldm_seed, hp.audioldm_dtype, self.device)
        if self.clap_model is None:
            self.clap_model = load_clap(clap_spec, device=self.device, seed=clap_seed)
        if self.generator.conditioning_dim != self._raw_clap.shape[1]:
            raise ValueError(f"AudioLDM takes {self.generator.conditioning_dim}-d conditioning but the cached CLAP "
                             f"embeddings are {self._raw_clap.shape[1]}-d")
        if hp.genre_classifier and self.classifier is None:
            self.classifier = AudioClassifier(hp.genre_classifier, device=self.device)

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
        if not self.hparams.oracle:  # aligned-space metrics (id50, song_id, ...) and test/loss
            emb, pooled = self.aligned.embed(batch["eeg"], batch["channel_mask"])
            loss = self.aligned.loss(gather_rows(self, emb), gather_rows(self, batch["clap"]),
                                     gather_rows(self, batch["music"], grads=False))
            self.log("test/loss", loss, sync_dist=True, batch_size=len(batch["eeg"]))
            self.test_metrics.update(emb, batch, pooled)
        r = self._reconstruct(batch, emb)
        if not self.hparams.oracle:
            self.recon_metrics.update_ridge(batch, r["cond"], r["raw_true"])
        if "audio" not in r:
            return
        sel = r["sel"].cpu()
        log_clips(self.logger, self._chosen, self.hparams.audio_clips, batch["segment"].cpu()[sel].tolist(),
                  batch["music"].cpu()[sel].tolist(), r["audio"], self.true_audio)
        t0 = time.time()
        self.recon_metrics.update_generated(batch, r, None if self.classifier is None else lambda: self._genre_labels(
            r["audio"], batch["music"][r["sel"]]))
        self._info["seconds"]["embed_and_metrics"] += time.time() - t0

    def _genre_labels(self, audio: np.ndarray, music: Tensor) -> tuple[Any, Any]:
        """The genre classifier's labels of the generated audio and of the true clips of ``music``."""
        from chanmusic.audio import MEL_SR

        clips = self.true_audio.clips(music.tolist())
        return self.classifier.labels(audio, MEL_SR), self.classifier.labels(clips, self.true_audio.sr)

    def on_test_epoch_end(self) -> None:
        if not self.hparams.oracle:
            try:  # the alignment metrics first, as the alignment stage writes them
                self.write_metrics(*self.test_metrics.compute(lambda n, v: self.log(n, v, rank_zero_only=True)))
            except ValueError as e:  # e.g. a test split too small for within_song: keep the reconstruction metrics
                log.warning("reconstruct: alignment metrics not computed: %s", e)
                self.test_metrics.reset()
        single = self._trainer is None or self.trainer.world_size == 1
        results = self.recon_metrics.compute(lambda n, v: self.log(n, v, rank_zero_only=True), single)
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

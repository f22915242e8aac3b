"""What the reconstruction stage prepares at the start of ``test`` / ``predict``: the data module, the true audio,
the windows to generate for, AudioLDM / CLAP / the genre classifier, the CLAP check, and the ridge adapter (fitted
on the train split's aligned embeddings, or loaded), with the run facts for ``reconstruct.json``.

:class:`ReconstructSetup` is a mixin of :class:`chanmusic.stages.reconstruct.ReconstructModule` (it uses the
module's ``hparams``, ``trainer``, ``device``, ``embed`` and ``all_gather``); it defines no Lightning hook.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from datamodules.true_audio import TrueAudio
from chanmusic.evaluation.genre_classifier import AudioClassifier
from chanmusic.stages.ridge import RidgeAdapter

log = logging.getLogger("chanmusic")

__all__ = ["RIDGE_FILE", "ReconstructSetup"]

RIDGE_FILE = "ridge.safetensors"


class ReconstructSetup:
    """Setup of :class:`chanmusic.stages.reconstruct.ReconstructModule` at test / predict start (``_start``)."""

    def _datamodule(self):
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not hasattr(dm, "dataset_for"):
            raise RuntimeError("ReconstructModule needs the NMEDDataModule: "
                               "trainer.test/predict(model, datamodule=dm)")
        if dm.cache is None:
            dm.setup()
        return dm

    def _start(self, stage: str) -> None:
        t0 = time.time()
        hp = self.hparams
        dm = self._datamodule()
        self._run_dir = self._log_dir()  # a collective under DDP: asked once, on every rank
        clap_spec = dm.clap if hp.clap is None else hp.clap
        clap_seed = dm.clap_seed if hp.clap_seed is None else hp.clap_seed
        if (str(clap_spec), int(clap_seed)) != (str(dm.clap), int(dm.clap_seed)):
            raise ValueError(f"model clap={clap_spec!r} (seed {clap_seed}) differs from the CLAP the cache was built "
                             f"with (data.clap={dm.clap!r}, seed {dm.clap_seed}): the CLAP score compares embeddings "
                             f"of one CLAP; leave model.init_args.clap unset")
        self._raw_clap = torch.from_numpy(np.asarray(dm.cache.clap, dtype=np.float32))
        self.true_audio = TrueAudio(dm)
        test_rows = np.asarray(dm.dataset_for("test").rows)
        self._chosen = self._choose(test_rows)
        self._load_models(clap_spec, clap_seed)
        if hp.check_clap:
            self._check_clap(int(dm.dataset_for("test").music[0]) if len(test_rows) else 0)
        ridge_s = 0.0
        if not hp.oracle:
            t1 = time.time()
            self.ridge = RidgeAdapter.load(hp.ridge_path) if hp.ridge_path else self._fit_ridge(dm)
            ridge_s = time.time() - t1
            if self.ridge.in_dim != self.hparams.clap_dim or self.ridge.out_dim != self._raw_clap.shape[1]:
                raise ValueError(f"ridge maps {self.ridge.in_dim} -> {self.ridge.out_dim}, expected "
                                 f"{self.hparams.clap_dim} -> {self._raw_clap.shape[1]}")
            if self._run_dir is not None and self.trainer.is_global_zero and not hp.ridge_path:
                self.ridge.save(self._run_dir / RIDGE_FILE)
            log.info("reconstruct: ridge alpha %.3g (LOO over %d train windows), %s", self.ridge.alpha,
                     self.ridge.n_train, "loaded from " + hp.ridge_path if hp.ridge_path else "fitted")
        self._info = {
            "stage": stage, "oracle": bool(hp.oracle), "align_checkpoint": hp.align_checkpoint,
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

    def _log_dir(self) -> Path | None:
        if self._trainer is None:
            return None
        d = self.trainer.log_dir or self.trainer.default_root_dir
        return Path(d) if d else None

    def _choose(self, test_rows: np.ndarray) -> np.ndarray:
        """Segment ids of the test windows to generate for (sorted)."""
        rows = np.sort(np.asarray(test_rows, dtype=np.int64))
        k = self.hparams.max_generate
        if k is None or k >= len(rows):
            return rows
        rng = np.random.default_rng(self.hparams.generation_seed)
        return np.sort(rng.choice(rows, size=int(k), replace=False))

    def _load_models(self, clap_spec: str, clap_seed: int) -> None:
        from chanmusic.audio import AudioLDMGenerator, load_clap

        hp = self.hparams
        dev = self.device
        if self.generator is None or self.generator.spec != str(hp.audioldm):
            dtype = None if hp.audioldm_dtype in (None, "float32") else getattr(torch, hp.audioldm_dtype)
            self.generator = AudioLDMGenerator.load(hp.audioldm, device=dev, seed=hp.audioldm_seed, dtype=dtype)
        else:
            self.generator.pipe.to(dev)
            self.generator.device = torch.device(dev)
        if self.clap_model is None:
            self.clap_model = load_clap(clap_spec, device=dev, seed=clap_seed)
        if self.generator.conditioning_dim != self._raw_clap.shape[1]:
            raise ValueError(f"AudioLDM takes {self.generator.conditioning_dim}-d conditioning but the cached CLAP "
                             f"embeddings are {self._raw_clap.shape[1]}-d")
        if hp.genre_classifier and self.classifier is None:
            self.classifier = AudioClassifier(hp.genre_classifier, device=dev)

    def _check_clap(self, music: int) -> None:
        try:
            clip = self.true_audio.clip(music)
        except Exception as e:  # noqa: BLE001 - audio unavailable: the check is advisory
            log.warning("reconstruct: could not read the true audio to check the CLAP (%s); skipping the check", e)
            return
        emb = self.clap_model.embed(clip[None], self.true_audio.sr)[0]
        cos = float(F.cosine_similarity(emb, self._raw_clap[music], dim=0))
        if cos < 0.999:
            raise ValueError(f"the CLAP loaded for reconstruction ({self.clap_model.description}) does not reproduce "
                             f"the cached embedding of music segment {music} (cosine {cos:.4f}): the cache was built "
                             f"with another CLAP or other audio files; rebuild it or fix data.clap")

    @torch.no_grad()
    def _fit_ridge(self, dm) -> RidgeAdapter:
        """Aligned embeddings of the whole train split (sharded over processes, gathered) -> raw CLAP."""
        from torch.utils.data import DataLoader, Subset

        ds = dm.dataset_for("train")
        n = len(ds)
        world = self.trainer.world_size if self._trainer is not None else 1
        rank = self.trainer.global_rank if self._trainer is not None else 0
        idx = list(range(rank, n, world))
        was_training = self.training
        self.eval()
        embs, music = [], []
        loader = DataLoader(Subset(ds, idx), batch_size=dm.batch_size, shuffle=False, num_workers=dm.num_workers)
        for batch in loader:
            e = self.embed(batch["eeg"].to(self.device), batch["channel_mask"].to(self.device))
            embs.append(e.float())
            music.append(batch["music"].to(self.device).long())
        self.train(was_training)
        E = torch.cat(embs) if embs else torch.zeros(0, self.hparams.clap_dim, device=self.device)
        M = torch.cat(music) if music else torch.zeros(0, dtype=torch.long, device=self.device)
        if world > 1:  # rank r holds rows r, r+W, ...: pad to equal length, gather, interleave back to 0..n-1
            per = math.ceil(n / world)
            pad = per - len(E)
            if pad:
                E = torch.cat([E, E.new_zeros(pad, E.shape[1])])
                M = torch.cat([M, M.new_zeros(pad)])
            E = self.all_gather(E).transpose(0, 1).reshape(-1, E.shape[1])[:n]
            M = self.all_gather(M).transpose(0, 1).reshape(-1)[:n]
        Y = self._raw_clap[M.cpu()]
        return RidgeAdapter.fit(E.cpu(), Y, self.hparams.ridge_alphas, normalize_input=self.hparams.ridge_normalize)

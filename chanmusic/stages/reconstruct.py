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
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from chanmusic.stages.align import AlignModule
from chanmusic.stages.encoder_init import CheckpointError, load_strict, safe_load, state_dict_of
from chanmusic.evaluation.metrics import ClapScore, Identification, LabelAgreement, MelPSNR, MelSSIM

log = logging.getLogger("chanmusic")

__all__ = ["DEFAULT_ALPHAS", "RidgeAdapter", "ReconstructModule", "TrueAudio", "AudioClassifier",
           "segment_seed", "ENCODER_SOURCES"]

DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-3, 5, 17))  #: ridge alpha grid (LOO)
ENCODER_SOURCES = ("auto", "config", "checkpoint")
RIDGE_FILE = "ridge.safetensors"


# ----------------------------------------------------------------------------------------------------------------
# Ridge adapter
# ----------------------------------------------------------------------------------------------------------------

class RidgeAdapter:
    """Multi-output ridge regression ``Y ≈ X W + b`` in closed form (torch), alpha chosen by leave-one-out.

    ``fit(X [N, Din], Y [N, Dout], alphas)`` centres X and Y (the intercept is not penalised) and, for every alpha of
    the grid, computes the exact leave-one-out mean squared error from one eigendecomposition of ``XcᵀXc`` (the
    "efficient LOO" of ridge: residual_i / (1 - h_ii), with ``h_ii`` the diagonal of the hat matrix
    ``Xc (XcᵀXc + αI)⁻¹ Xcᵀ + 11ᵀ/N``). The alpha with the smallest error (one alpha for all outputs, as sklearn's
    ``RidgeCV`` with ``alpha_per_target=False``) gives ``W = solve(XcᵀXc + αI, XcᵀYc)`` and ``b = ȳ - x̄ W``.
    Everything is float64 and streamed over row chunks, so memory is O(D²) plus one chunk.

    ``normalize_input``: L2-normalise the rows of X before fitting and predicting (the aligned space is a cosine
    space: InfoNCE constrains directions, not norms). The flag is part of the adapter and is saved with it.

    Attributes: ``weight [Din, Dout]``, ``bias [Dout]`` (float32), ``alpha``, ``alphas`` and ``loo_mse`` (the
    curve), ``n_train``.
    """

    def __init__(self, weight: Tensor, bias: Tensor, alpha: float, alphas: Sequence[float] = (),
                 loo_mse: Sequence[float] = (), n_train: int = 0, normalize_input: bool = False):
        self.weight = weight.detach().float().cpu().contiguous()
        self.bias = bias.detach().float().cpu().contiguous()
        self.alpha = float(alpha)
        self.alphas = [float(a) for a in alphas]
        self.loo_mse = [float(e) for e in loo_mse]
        self.n_train = int(n_train)
        self.normalize_input = bool(normalize_input)

    @property
    def in_dim(self) -> int:
        return int(self.weight.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.weight.shape[1])

    @staticmethod
    def _prep(X: Tensor, normalize: bool) -> Tensor:
        X = X.detach().to("cpu", torch.float64)
        return F.normalize(X, dim=-1) if normalize else X

    @classmethod
    def fit(cls, X: Tensor, Y: Tensor, alphas: Sequence[float] = DEFAULT_ALPHAS, normalize_input: bool = False,
            chunk_size: int = 8192) -> "RidgeAdapter":
        """Fit on ``X [N, Din]`` -> ``Y [N, Dout]`` (see the class docstring)."""
        if X.dim() != 2 or Y.dim() != 2 or len(X) != len(Y):
            raise ValueError(f"ridge: expected X [N, Din] and Y [N, Dout], got {tuple(X.shape)} and {tuple(Y.shape)}")
        alphas = [float(a) for a in alphas]
        if not alphas or min(alphas) <= 0:
            raise ValueError(f"ridge: alphas must be positive, got {alphas}")
        n = len(X)
        if n < 3:
            raise ValueError(f"ridge: need at least 3 training rows, got {n}")
        Xd = cls._prep(X, normalize_input)
        Yd = Y.detach().to("cpu", torch.float64)
        if not (torch.isfinite(Xd).all() and torch.isfinite(Yd).all()):
            raise ValueError("ridge: X or Y contains NaN or inf")
        din, dout = Xd.shape[1], Yd.shape[1]
        x_mean, y_mean = Xd.mean(0), Yd.mean(0)
        G = torch.zeros(din, din, dtype=torch.float64)
        C = torch.zeros(din, dout, dtype=torch.float64)
        chunks = [slice(i, min(n, i + chunk_size)) for i in range(0, n, chunk_size)]
        for s in chunks:
            xc, yc = Xd[s] - x_mean, Yd[s] - y_mean
            G += xc.T @ xc
            C += xc.T @ yc
        lam, V = torch.linalg.eigh(G)
        top = float(lam.max()) if len(lam) else 0.0
        keep = lam > max(top, 1e-300) * 1e-12  # drop the null space (exactly 0 in Xc V; rounding noise otherwise)
        lam, V = lam[keep], V[:, keep]
        B = V.T @ C  # [r, Dout]
        sse = torch.zeros(len(alphas), dtype=torch.float64)
        for s in chunks:
            Z = (Xd[s] - x_mean) @ V  # [c, r]
            Yc = Yd[s] - y_mean
            Z2 = Z * Z
            for i, a in enumerate(alphas):
                d = 1.0 / (lam + a)
                h = Z2 @ d + 1.0 / n
                R = (Yc - (Z * d) @ B) / (1.0 - h).clamp_min(1e-12)[:, None]
                sse[i] += (R * R).sum()
        loo = (sse / (n * dout)).tolist()
        best = int(np.argmin(loo))
        alpha = alphas[best]
        if len(alphas) > 1 and best in (0, len(alphas) - 1):
            log.warning("ridge: the selected alpha %.3g is at the edge of the grid [%.3g, %.3g]; widen ridge_alphas",
                        alpha, min(alphas), max(alphas))
        W = torch.linalg.solve(G + alpha * torch.eye(din, dtype=torch.float64), C)
        b = y_mean - x_mean @ W
        return cls(W, b, alpha, alphas, loo, n, normalize_input)

    def predict(self, X: Tensor) -> Tensor:
        """``X [B, Din]`` -> ``[B, Dout]`` on X's device, float32."""
        x = X.float()
        if self.normalize_input:
            x = F.normalize(x, dim=-1)
        return x @ self.weight.to(x.device) + self.bias.to(x.device)

    __call__ = predict

    # ---- files -----------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write a safetensors file (tensors + the settings as string metadata)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"alpha": repr(self.alpha), "alphas": json.dumps(self.alphas), "loo_mse": json.dumps(self.loo_mse),
                "n_train": str(self.n_train), "normalize_input": json.dumps(self.normalize_input),
                "format": "chanmusic.RidgeAdapter/1"}
        save_file({"weight": self.weight.contiguous(), "bias": self.bias.contiguous()}, str(path), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "RidgeAdapter":
        """Read a file written by :meth:`save` (safetensors: no pickle)."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ridge file not found: {path}")
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != "chanmusic.RidgeAdapter/1":
                raise ValueError(f"{path}: not a chanmusic ridge adapter file")
            weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
        return cls(weight, bias, float(meta["alpha"]), json.loads(meta["alphas"]), json.loads(meta["loo_mse"]),
                   int(meta["n_train"]), json.loads(meta["normalize_input"]))

    def summary(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "alphas": self.alphas, "loo_mse": self.loo_mse, "n_train": self.n_train,
                "in_dim": self.in_dim, "out_dim": self.out_dim, "normalize_input": self.normalize_input}


# ----------------------------------------------------------------------------------------------------------------
# True audio and the optional genre classifier
# ----------------------------------------------------------------------------------------------------------------

class TrueAudio:
    """The true audio clip of a cached music segment, cut exactly as ``prepare`` cut it for CLAP and the mel.

    Each song file is read once (at ``sr``, default 16 kHz) and kept in memory.
    """

    def __init__(self, dm, sr: int | None = None):
        from chanmusic.audio.audio import MEL_SR

        self.dm = dm
        self.sr = int(sr or MEL_SR)
        self.sfreq = float(dm.cache.manifest.get("sfreq", dm.sfreq))
        self._audio: dict[int, np.ndarray] = {}

    def stimulus(self, music: int) -> str:
        """``"nmed-t:21"``-style key of the segment's stimulus."""
        return str(self.dm.cache.manifest["stimuli"][int(self.dm.cache.music[int(music), 0])])

    def clip(self, music: int) -> np.ndarray:
        from chanmusic.data.prepare import _cut  # the cache's own cutting rule (audio sample 0 = EEG sample 0)
        from datamodules.nmed import read_audio

        _, start, length = (int(v) for v in self.dm.cache.music[int(music)])
        number = int(self.stimulus(music).split(":")[1])
        if number not in self._audio:
            self._audio[number] = read_audio(self.dm.audio_root, number, target_sr=self.sr)[0]
        return _cut(self._audio[number], self.sr, start, length, self.sfreq)

    def clips(self, music: Sequence[int]) -> np.ndarray:
        """``[B, S]`` float32 (all segments of a run have one length)."""
        return np.stack([self.clip(int(m)) for m in music])


class AudioClassifier:
    """A transformers audio-classification model (local folder or hub id): ``labels(audio, sr) -> [B]`` argmax ids.

    For the paper's genre score (a music-genre classifier, e.g. ``dima806/music_genres_classification``, run on the
    generated and the true audio; agreement of the two labels). Audio is resampled to the feature extractor's rate.
    """

    def __init__(self, spec: str, device: str | torch.device = "cpu"):
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        self.spec = str(spec)
        self.device = torch.device(device)
        self.fe = AutoFeatureExtractor.from_pretrained(self.spec)
        self.model = AutoModelForAudioClassification.from_pretrained(self.spec).to(self.device).eval()
        self.id2label = dict(getattr(self.model.config, "id2label", {}) or {})

    @torch.no_grad()
    def labels(self, audio: np.ndarray | Tensor, sr: int, batch_size: int = 16) -> Tensor:
        from chanmusic.audio.audio import resample

        x = audio.detach().cpu().float().numpy() if isinstance(audio, Tensor) else np.asarray(audio, np.float32)
        if x.ndim == 1:
            x = x[None]
        rate = int(getattr(self.fe, "sampling_rate", sr))
        out = []
        for i in range(0, len(x), batch_size):
            clips = [resample(c, sr, rate) for c in x[i:i + batch_size]]
            feats = self.fe(clips, sampling_rate=rate, return_tensors="pt", padding=True)
            feats = {k: v.to(self.device) for k, v in feats.items() if isinstance(v, Tensor)}
            out.append(self.model(**feats).logits.argmax(-1).cpu())
        return torch.cat(out)


def segment_seed(generation_seed: int, segment: int) -> int:
    """The diffusion noise seed of one test window: a function of (seed, window id) only, so the audio generated for
    a window does not depend on batching, ``max_generate`` or the number of processes."""
    return (int(generation_seed) * 1_000_003 + int(segment)) % (2 ** 63)


# ----------------------------------------------------------------------------------------------------------------
# Aligned-checkpoint helpers
# ----------------------------------------------------------------------------------------------------------------

def _read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    ckpt = safe_load(path)
    hp = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    return state_dict_of(ckpt), dict(hp or {})


def _run_config_of(ckpt_path: str | Path) -> Path | None:
    """The ``config.yaml`` LightningCLI saved for the run that wrote ``ckpt_path`` (beside it or one folder up)."""
    p = Path(ckpt_path).resolve()
    for d in (p.parent, p.parent.parent):
        if (d / "config.yaml").is_file():
            return d / "config.yaml"
    return None


def _encoder_from_run_config(config: Path, facts_from: nn.Module) -> nn.Module:
    """Instantiate the encoder of a saved LightningCLI config, with the data facts (``n_channels``, ``sfreq``,
    ``n_times``, ``ch_names``; linked by the CLI, so absent from the saved file) taken from ``facts_from``."""
    import yaml
    from jsonargparse import ArgumentParser

    cfg = yaml.safe_load(config.read_text()) or {}
    spec = ((cfg.get("model") or {}).get("init_args") or {}).get("encoder")
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise CheckpointError(f"{config}: no model.init_args.encoder with a class_path")
    init = dict(spec.get("init_args") or {})
    for fact in ("n_channels", "sfreq", "n_times", "ch_names"):
        if hasattr(facts_from, fact):
            init[fact] = getattr(facts_from, fact)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(nn.Module, "encoder")
    parsed = parser.parse_object({"encoder": {"class_path": spec["class_path"], "init_args": init}})
    return parser.instantiate_classes(parsed).encoder


# ----------------------------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------------------------

class ReconstructModule(AlignModule):
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
            ``chanmusic.audio.audio.AudioLDMGenerator``).
        audio_length_s: seconds to generate; ``None`` = the EEG window's length (mels are cropped to equal frames).
        generation_seed: seeds the diffusion noise (per window, :func:`segment_seed`) and the ``max_generate`` draw.
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
        encoder_note = "configured (unused: oracle)" if oracle else "configured"
        if align_checkpoint and not oracle:
            state, hp = _read_checkpoint(align_checkpoint)
            for name, configured in (("head", head), ("head_hidden", head_hidden)):
                if hp.get(name) is not None and hp[name] != configured:
                    log.info("reconstruct: %s=%r from %s (configured %r)", name, hp[name], align_checkpoint,
                             configured)
            head = hp.get("head") or head
            head_hidden = hp.get("head_hidden") or head_hidden
            config = _run_config_of(align_checkpoint) if encoder_source != "config" else None
            if encoder_source == "checkpoint" and config is None:
                raise CheckpointError(f"encoder_source='checkpoint' but no config.yaml beside {align_checkpoint} "
                                      f"(or in its parent folder)")
            if config is not None:
                encoder = _encoder_from_run_config(config, encoder)
                encoder_note = f"{type(encoder).__name__} from {config}"
                log.info("reconstruct: encoder rebuilt from the aligned run's %s", config)
        super().__init__(encoder, clap_dim, head, head_hidden, id_repeats=id_repeats, id_seed=id_seed)
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

    # ---- setup at test / predict start -------------------------------------------------------------------------
    def _datamodule(self):
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not hasattr(dm, "dataset_for"):
            raise RuntimeError("ReconstructModule needs the NMEDDataModule: "
                               "trainer.test/predict(model, datamodule=dm)")
        if dm.cache is None:
            dm.setup()
        return dm

    def on_test_start(self) -> None:
        self._start("test")

    def on_predict_start(self) -> None:
        self._start("predict")

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
        from chanmusic.audio.audio import AudioLDMGenerator, load_clap

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

    # ---- generation -------------------------------------------------------------------------------------------
    def _length_s(self, batch: dict[str, Any]) -> float:
        if self.hparams.audio_length_s is not None:
            return float(self.hparams.audio_length_s)
        return float(batch["length"][0]) / float(self.true_audio.sfreq)

    @torch.no_grad()
    def generate(self, cond: Tensor, segments: Sequence[int], audio_length_s: float) -> np.ndarray:
        """AudioLDM audio ``[B, S]`` (16 kHz) for conditioning ``cond [B, 512]``, window ``segments[i]``'s noise
        drawn from :func:`segment_seed` (``AudioLDMGenerator.generate`` seeds by batch position instead, which would
        make a window's audio depend on batching). Same normalisation, guidance and negative embedding as
        ``AudioLDMGenerator.generate``; with one window and seed s both give the same audio."""
        gen = self.generator
        pipe = gen.pipe
        hp = self.hparams
        c = F.normalize(cond.detach().float(), dim=-1)
        dtype = pipe.text_encoder.dtype
        vsf = pipe.vae_scale_factor
        up = float(np.prod(pipe.vocoder.config.upsample_rates)) / float(pipe.vocoder.config.sampling_rate)
        height = int(audio_length_s / up)
        if height % vsf:
            height = int(np.ceil(height / vsf)) * vsf
        shape = (1, int(pipe.unet.config.in_channels), height // vsf, int(pipe.vocoder.config.model_in_dim) // vsf)
        seeds = [segment_seed(hp.generation_seed, s) for s in segments]
        outs = []
        bs = max(1, int(hp.generation_batch_size))
        for i in range(0, len(c), bs):
            chunk = c[i:i + bs].to(gen.device, dtype)
            lat = torch.cat([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s), dtype=dtype)
                             for s in seeds[i:i + bs]])
            kwargs = dict(prompt_embeds=chunk, num_inference_steps=int(hp.num_inference_steps),
                          guidance_scale=float(hp.guidance_scale), latents=lat.to(gen.device), output_type="np",
                          audio_length_in_s=float(audio_length_s))
            if hp.guidance_scale > 1.0:
                kwargs["negative_prompt_embeds"] = gen._negative(hp.negative, chunk.shape[0], chunk)
            outs.append(np.asarray(pipe(**kwargs).audios, dtype=np.float32).reshape(chunk.shape[0], -1))
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)

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
            from chanmusic.audio.audio import MEL_SR, log_mel

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
            from chanmusic.audio.audio import MEL_SR

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
                metric.reset()
                continue
            metric.reset()
            results[name] = {"mean": float(r["mean"]), "std": float(r["std"]), "n": int(r["n"]),
                             "chance": None if r["chance"] is None or math.isnan(r["chance"]) else float(r["chance"])}
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
        from chanmusic.audio.audio import MEL_SR
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

"""Audio side of chanmusic: AudioLDM's mel spectrogram, a CLAP audio embedder and an AudioLDM generator.

Everything heavy (transformers, diffusers, laion-clap, librosa, scipy) is imported inside the functions that
need it, so ``import chanmusic.audio.audio`` is cheap.

Public surface
--------------
``log_mel(audio, sr=16000)``
    AudioLDM's log-mel spectrogram (16 kHz, n_fft 1024, hop 160, win 1024, 64 slaney mels 0-8000 Hz, magnitude
    STFT, ``log(clamp(x, 1e-5))``). ``MEL_SR``, ``MEL_HOP``, ``N_MELS``, ``MEL_N_FFT`` give the constants.
``ClapEmbedder.from_config(spec, device="cpu", seed=0)`` / ``load_clap(spec, ...)``
    CLAP *audio* embeddings, L2-normalised, from a laion-clap ``.pt`` file, a transformers CLAP (local
    directory or hub id) or ``"tiny-random"`` (a tiny randomly initialised CLAP for offline demos and tests).
``AudioLDMGenerator.load(spec, device="cpu", seed=0)``
    AudioLDM 1 (diffusers) conditioned on a 512-d CLAP embedding, from a local diffusers directory, a hub id or
    ``"tiny-random"``.
``resample(audio, sr_from, sr_to)``, ``write_wav(path, audio, sr)``.

Random models announce themselves: a logged warning at load, ``is_random = True`` and a ``description`` that
says the outputs carry no pretrained meaning.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

__all__ = [
    "MEL_SR", "MEL_HOP", "MEL_N_FFT", "MEL_WIN", "N_MELS", "MEL_FMIN", "MEL_FMAX", "MEL_LOG_FLOOR",
    "CLAP_SR", "CLAP_CLIP_SAMPLES", "CLAP_DIM", "TINY_RANDOM",
    "log_mel", "mel_frames", "resample", "write_wav",
    "ClapEmbedder", "load_clap", "AudioLDMGenerator", "load_audioldm",
]

# --------------------------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------------------------

MEL_SR = 16000      #: AudioLDM's sample rate (Hz); also the rate AudioLDM generates at
MEL_N_FFT = 1024
MEL_WIN = 1024
MEL_HOP = 160       #: 10 ms frames: N = 1 + samples // 160 (centred STFT), so 5 s -> 501 frames
N_MELS = 64
MEL_FMIN = 0.0
MEL_FMAX = 8000.0
MEL_LOG_FLOOR = 1e-5  #: silence maps to log(1e-5)

CLAP_SR = 48000              #: every CLAP here (laion-clap HTSAT and transformers CLAP) takes 48 kHz audio
CLAP_CLIP_SAMPLES = 480000   #: 10 s at 48 kHz: the CLAP input window
CLAP_DIM = 512               #: the joint CLAP space (and AudioLDM-S's conditioning width)

TINY_RANDOM = "tiny-random"

# Bumped whenever the waveform -> embedding preprocessing changes, so embedding caches keyed on `identity` expire.
_CLAP_PREP_VERSION = "prep1:center-crop-10s,repeatpad"

_LAION_AUDIO_PREFIXES = ("audio_branch.", "audio_transform.", "audio_projection.")
_LAION_AUDIO_KEYS = ("logit_scale_a",)
# audio width of the HTSAT variants laion-clap ships configs for -> the model name
_HTSAT_BY_WIDTH = {768: "HTSAT-tiny", 1024: "HTSAT-base", 2048: "HTSAT-large"}


# --------------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------------

def _to_numpy(audio: Any) -> np.ndarray:
    if isinstance(audio, torch.Tensor):
        return audio.detach().to("cpu", torch.float32).numpy()
    return np.asarray(audio, dtype=np.float32)


def resample(audio: Any, sr_from: int, sr_to: int) -> Any:
    """Resample along the last axis with a polyphase filter (``scipy.signal.resample_poly``, Kaiser window).

    ``audio`` is a numpy array or a torch tensor of any leading shape; the result has the same type (and, for a
    tensor, the same device and dtype), with ``ceil(n * sr_to / sr_from)`` samples. Equal rates return the input.
    """
    sr_from, sr_to = int(round(sr_from)), int(round(sr_to))
    if sr_from <= 0 or sr_to <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_from} -> {sr_to}")
    if sr_from == sr_to:
        return audio
    from scipy.signal import resample_poly

    g = math.gcd(sr_from, sr_to)
    x = _to_numpy(audio)
    y = resample_poly(x.astype(np.float64, copy=False), sr_to // g, sr_from // g, axis=-1).astype(np.float32)
    if isinstance(audio, torch.Tensor):
        return torch.from_numpy(y).to(device=audio.device, dtype=audio.dtype if audio.is_floating_point()
                                      else torch.float32)
    return y


def write_wav(path: str | os.PathLike, audio: Any, sr: int, subtype: str = "FLOAT") -> Path:
    """Write ``audio`` (``[S]`` mono or ``[C, S]`` channels-first; numpy or torch) to a WAV file.

    ``subtype`` is ``"FLOAT"`` (32-bit float, values kept as they are) or ``"PCM_16"`` (values clipped to
    [-1, 1] first, with a logged warning if anything was clipped). Parent folders are created. Returns the path.
    """
    import soundfile as sf

    path = Path(path)
    x = _to_numpy(audio)
    if x.ndim == 2:
        x = x.T  # soundfile wants [frames, channels]
    elif x.ndim != 1:
        raise ValueError(f"write_wav expects [S] or [C, S] audio, got shape {x.shape}")
    subtype = subtype.upper()
    if subtype not in ("FLOAT", "PCM_16"):
        raise ValueError(f"subtype must be 'FLOAT' or 'PCM_16', got {subtype!r}")
    if not np.isfinite(x).all():
        raise ValueError(f"{path}: audio contains NaN or inf")
    if subtype == "PCM_16":
        n_clip = int((np.abs(x) > 1.0).sum())
        if n_clip:
            log.warning("write_wav(%s): %d samples outside [-1, 1] clipped for PCM_16", path, n_clip)
        x = np.clip(x, -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x.astype(np.float32), int(sr), subtype=subtype)
    return path


# --------------------------------------------------------------------------------------------------------------
# Mel spectrogram
# --------------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _mel_basis_np() -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=MEL_SR, n_fft=MEL_N_FFT, n_mels=N_MELS, fmin=MEL_FMIN, fmax=MEL_FMAX,
                               htk=False, norm="slaney").astype(np.float32)  # [64, 513]


_MEL_TORCH_CACHE: dict[tuple[str, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}


def _mel_tensors(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    key = (str(device), dtype)
    if key not in _MEL_TORCH_CACHE:
        basis = torch.from_numpy(_mel_basis_np()).to(device=device, dtype=dtype)
        window = torch.hann_window(MEL_WIN, periodic=True, device=device, dtype=dtype)
        _MEL_TORCH_CACHE[key] = (basis, window)
    return _MEL_TORCH_CACHE[key]


def mel_frames(n_samples: int) -> int:
    """Number of mel frames ``log_mel`` gives for ``n_samples`` samples at 16 kHz (``1 + n // 160``)."""
    return 1 + int(n_samples) // MEL_HOP


def log_mel(audio: Any, sr: int = MEL_SR) -> torch.Tensor:
    """AudioLDM's log-mel spectrogram of 16 kHz audio.

    ``audio``: ``[B, S]`` or ``[S]`` float (torch or numpy). If ``sr`` is not 16 kHz the audio is first resampled
    with :func:`resample`. Returns float32 ``[B, 64, N]`` (or ``[64, N]`` for 1-D input) on the input's device,
    ``N = 1 + S // 160`` (5 s -> 501 frames).

    As in AudioLDM's ``TacotronSTFT``: a centred (reflect-padded) STFT with a periodic Hann window
    (n_fft = win = 1024, hop 160), magnitude (not power), a slaney-normalised mel filterbank from
    ``librosa.filters.mel`` (64 bands, 0-8000 Hz), then ``log(clamp(x, 1e-5))``. The waveform is used as given
    (no loudness normalisation). Run time is pure torch; the filterbank is computed once and cached.
    """
    x = audio if isinstance(audio, torch.Tensor) else torch.from_numpy(_to_numpy(audio))
    if int(sr) != MEL_SR:
        x = resample(x, sr, MEL_SR)
    if not x.is_floating_point():
        x = x.float()
    x = x.to(torch.float32)
    squeeze = x.ndim == 1
    if squeeze:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"log_mel expects [B, S] or [S] audio, got shape {tuple(x.shape)}")
    if x.shape[-1] <= MEL_N_FFT // 2:
        raise ValueError(f"log_mel needs more than {MEL_N_FFT // 2} samples, got {x.shape[-1]}")
    basis, window = _mel_tensors(x.device, x.dtype)
    spec = torch.stft(x, n_fft=MEL_N_FFT, hop_length=MEL_HOP, win_length=MEL_WIN, window=window, center=True,
                      pad_mode="reflect", normalized=False, onesided=True, return_complex=True).abs()
    mel = torch.log(torch.clamp(torch.matmul(basis, spec), min=MEL_LOG_FLOOR))
    return mel[0] if squeeze else mel


# --------------------------------------------------------------------------------------------------------------
# Shared loading helpers
# --------------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator inside the block and restore the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def _announce_random(what: str, description: str) -> None:
    bar = "!" * 78
    log.warning("\n%s\n!! %s: %s\n!! Real checkpoints load from a local path or hub id (see chanmusic/audio.py).\n%s",
                bar, what, description, bar)


def _file_stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _dir_stamp(path: Path) -> str:
    """size:mtime of every file directly in (and one level below) a model folder, for cache keys."""
    parts = []
    for p in sorted(list(path.glob("*")) + list(path.glob("*/*"))):
        if p.is_file():
            parts.append(f"{p.relative_to(path)}={_file_stamp(p)}")
    import hashlib

    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def _clip_list(audio: Any) -> list[np.ndarray]:
    """``[B, S]`` / ``[S]`` array or tensor, or a sequence of 1-D clips -> list of 1-D float32 numpy arrays."""
    if isinstance(audio, (torch.Tensor, np.ndarray)):
        x = _to_numpy(audio)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2:
            raise ValueError(f"expected [B, S] or [S] audio, got shape {x.shape}")
        clips = list(x)
    else:
        clips = [_to_numpy(c) for c in audio]
    for i, c in enumerate(clips):
        if c.ndim != 1 or c.shape[0] == 0:
            raise ValueError(f"clip {i}: expected a non-empty 1-D waveform, got shape {c.shape}")
        if not np.isfinite(c).all():
            raise ValueError(f"clip {i}: waveform contains NaN or inf")
    return clips


# --------------------------------------------------------------------------------------------------------------
# CLAP
# --------------------------------------------------------------------------------------------------------------

def _import_clap_module():
    """Import laion-clap's ``clap_module`` without running ``laion_clap/__init__``.

    ``import laion_clap`` imports ``laion_clap.training.data``, which calls ``BertTokenizer.from_pretrained``,
    ``RobertaTokenizer.from_pretrained`` and ``BartTokenizer.from_pretrained`` at import time: offline that retries
    for about a minute per tokenizer and then fails. The model code lives in the self-contained ``clap_module``
    package inside the installed ``laion_clap`` folder, which ``laion_clap`` itself puts on ``sys.path`` (it is
    appended, as laion_clap does, so it shadows nothing). Only the model code is used here.
    """
    spec = importlib.util.find_spec("laion_clap")
    if spec is None or spec.origin is None:
        raise ImportError("laion-clap is not installed: pip install laion-clap==1.1.7")
    pkg_dir = os.path.dirname(spec.origin)
    if pkg_dir not in sys.path:
        sys.path.append(pkg_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # timm.models.layers deprecation inside clap_module
        import clap_module  # noqa: F401
        from clap_module.factory import _MODEL_CONFIGS
        from clap_module.model import CLAP
    if not os.path.abspath(clap_module.__file__).startswith(os.path.abspath(pkg_dir)):
        raise ImportError(f"'clap_module' resolves to {clap_module.__file__}, not laion-clap's copy in {pkg_dir}")
    return CLAP, _MODEL_CONFIGS


def build_laion_clap(amodel: str = "HTSAT-tiny"):
    """A laion-clap ``CLAP`` model (unfused, fp32, random weights) for audio embedding, built offline.

    The audio side is laion-clap's own config for ``amodel`` (``HTSAT-tiny`` or ``HTSAT-base``). The text branch
    is laion-clap's built-in 'transformer' type shrunk to one 8-wide layer: the official ``tmodel='roberta'``
    downloads ``roberta-base``, and no text weights are ever used here. Returns ``(model, model_cfg)``.
    """
    import copy

    CLAP, configs = _import_clap_module()
    if amodel not in configs:
        raise ValueError(f"unknown laion-clap audio model {amodel!r}; available: {sorted(configs)}")
    cfg = copy.deepcopy(configs[amodel])
    cfg["text_cfg"].update(model_type="transformer", width=8, heads=1, layers=1, vocab_size=8, context_length=4)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.meshgrid.*")  # inside HTSAT's window attention
        model = CLAP(**cfg, enable_fusion=False, fusion_type="None")
    return model.float().eval(), cfg


def _is_laion_audio_key(k: str) -> bool:
    return k.startswith(_LAION_AUDIO_PREFIXES) or k in _LAION_AUDIO_KEYS


def _load_trusted_checkpoint(path: Path) -> Any:
    """``torch.load`` a checkpoint the user named, trying ``weights_only=True`` first.

    The official LAION ``.pt`` files pickle numpy scalars (``numpy.core.multiarray.scalar``), which the safe
    loader refuses; for such a file we fall back to ``weights_only=False`` with a logged warning. That runs
    arbitrary pickled code, so it is only ever done for a file the user explicitly named as the CLAP checkpoint.
    """
    import pickle

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        log.warning("%s does not load with torch.load(weights_only=True) (%s). Official laion-clap files pickle "
                    "numpy scalars, so loading it with weights_only=False because you named this file: only do "
                    "this with files you trust.", path, first[:200])
        return torch.load(str(path), map_location="cpu", weights_only=False)


def laion_audio_state_dict(checkpoint: Any) -> dict[str, torch.Tensor]:
    """The CLAP audio weights of a laion-clap checkpoint object.

    Unwraps ``{"state_dict": ...}``, strips a DataParallel/DDP ``module.`` prefix, and keeps only keys under
    ``audio_branch``, ``audio_transform``, ``audio_projection`` and ``logit_scale_a``.
    """
    sd = checkpoint["state_dict"] if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint else checkpoint
    if not isinstance(sd, Mapping):
        raise ValueError(f"not a laion-clap checkpoint: expected a state dict, got {type(sd).__name__}")
    out = {}
    for k, v in sd.items():
        k = k[len("module."):] if k.startswith("module.") else k
        if _is_laion_audio_key(k):
            if not isinstance(v, torch.Tensor):
                raise ValueError(f"laion-clap checkpoint key {k!r} is a {type(v).__name__}, not a tensor")
            out[k] = v
    if not out:
        raise ValueError("no CLAP audio weights found (expected keys under audio_branch / audio_projection)")
    return out


_LAION_SIGNATURES: dict[str, dict[str, tuple[int, ...]]] = {}  # amodel -> audio key -> shape, once built


def _check_laion_keys(path: Path, amodel: str, audio_sd: Mapping[str, torch.Tensor],
                      expected: Mapping[str, tuple[int, ...]]) -> None:
    """Raise ``ValueError`` naming every missing, unexpected or mis-shaped CLAP audio key."""
    missing = sorted(set(expected) - set(audio_sd))
    unexpected = sorted(set(audio_sd) - set(expected))
    bad_shape = sorted(k for k in set(expected) & set(audio_sd) if tuple(audio_sd[k].shape) != tuple(expected[k]))
    if not (missing or unexpected or bad_shape):
        return

    def show(keys):
        return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")

    msg = [f"{path}: CLAP audio weights do not match laion-clap {amodel}"]
    if missing:
        msg.append(f"missing keys: {show(missing)}")
    if unexpected:
        msg.append(f"unexpected keys: {show(unexpected)}")
    if bad_shape:
        msg.append("shape mismatch: " + show([f"{k} {tuple(audio_sd[k].shape)} vs {tuple(expected[k])}"
                                              for k in bad_shape]))
    raise ValueError("; ".join(msg))


class _LaionBackend:
    """laion-clap HTSAT audio tower; replicates ``CLAP_Module.get_audio_embedding_from_data`` for <= 10 s clips."""

    kind = "laion-clap"

    def __init__(self, model, clip_samples: int):
        self.model = model
        self.clip_samples = clip_samples
        self.dim = int(model.audio_projection[-1].out_features)

    def __call__(self, clips: list[np.ndarray], device: torch.device) -> torch.Tensor:
        batch = []
        for c in clips:
            # laion-clap quantises through int16 (clipping to [-1, 1]) before embedding
            c = ((np.clip(c, -1.0, 1.0) * 32767.0).astype(np.int16) / 32767.0).astype(np.float32)
            w = torch.from_numpy(c)
            n = w.shape[0]
            if n < self.clip_samples:  # 'repeatpad': tile whole copies, then zero-pad (laion-clap's rule)
                w = w.repeat(self.clip_samples // n)
                w = F.pad(w, (0, self.clip_samples - w.shape[0]))
            batch.append({"waveform": w, "longer": torch.tensor([False])})
        return self.model.get_audio_embedding(batch)


class _HFBackend:
    """transformers ``ClapAudioModelWithProjection`` + ``ClapFeatureExtractor`` (``rand_trunc``, ``repeatpad``)."""

    kind = "transformers"

    def __init__(self, model, feature_extractor):
        self.model = model
        self.fe = feature_extractor
        self.dim = int(model.config.projection_dim)
        self.clip_samples = int(feature_extractor.nb_max_samples)

    def __call__(self, clips: list[np.ndarray], device: torch.device) -> torch.Tensor:
        # clips are <= nb_max_samples already, so 'rand_trunc' never draws a random crop
        feats = self.fe(clips, sampling_rate=self.fe.sampling_rate, truncation="rand_trunc", padding="repeatpad",
                        return_tensors="pt")
        out = self.model(input_features=feats["input_features"].to(device, self.model.dtype),
                         is_longer=feats["is_longer"].to(device))
        return out.audio_embeds


class ClapEmbedder:
    """CLAP audio embeddings: ``embed(audio [B, S], sr) -> [B, D]`` float32, L2-normalised, on the CPU.

    Build with :meth:`from_config` (or :func:`load_clap`); ``spec`` is one of

    * a path to a laion-clap ``.pt`` checkpoint (e.g. ``630k-audioset-best.pt``, HTSAT-tiny, or the music CLAP
      ``music_audioset_epoch_15_esc_90.14.pt``, HTSAT-base). Only unfused checkpoints are supported. The
      architecture is read from the checkpoint (audio width 768 -> HTSAT-tiny, 1024 -> HTSAT-base) unless
      ``amodel`` is given. Only the audio weights are loaded; any missing or unexpected audio key is an error.
      See :func:`_load_trusted_checkpoint` for the ``weights_only`` fallback.
    * a local directory or hub id of a transformers CLAP (``ClapModel`` or ``ClapAudioModelWithProjection``
      weights, e.g. ``laion/clap-htsat-unfused`` or ``laion/larger_clap_music``). A local folder without
      ``preprocessor_config.json`` gets the default ``ClapFeatureExtractor`` (48 kHz, 64 mels, 10 s), with a warning.
    * ``"tiny-random"``: a tiny randomly initialised transformers CLAP (``dim``-d, default 512), seeded by
      ``seed``. Its embeddings carry no pretrained meaning; it exists so that the pipeline runs offline.

    Preprocessing is deterministic: audio is resampled to 48 kHz (polyphase, :func:`resample`); a clip longer than
    CLAP's 10 s window is centre-cropped to 10 s (the libraries would pick a random crop); shorter clips are
    tiled with whole copies and zero-padded to 10 s ("repeatpad", as both libraries do). The laion-clap path also
    quantises through int16 as laion-clap does. Inference runs in eval mode under ``torch.no_grad``.
    """

    sample_rate = CLAP_SR

    def __init__(self, backend, *, spec: str, identity: str, description: str, is_random: bool,
                 device: str | torch.device = "cpu"):
        self._backend = backend
        self.spec = spec
        self.identity = identity
        self.description = description
        self.is_random = is_random
        self.device = torch.device(device)
        self.model = backend.model.to(self.device).eval()

    # ---------------------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, spec: str, device: str | torch.device = "cpu", seed: int = 0, *,
                    amodel: str | None = None, dim: int = CLAP_DIM) -> "ClapEmbedder":
        """Load the CLAP named by ``spec`` (see the class docstring). ``seed`` and ``dim`` apply to
        ``"tiny-random"`` only; ``amodel`` (``"HTSAT-tiny"`` / ``"HTSAT-base"``) to laion-clap files only."""
        spec = str(spec)
        if spec == TINY_RANDOM:
            return cls._tiny_random(seed=seed, dim=dim, device=device)
        p = Path(spec).expanduser()
        if p.is_file():
            return cls._from_laion_file(p, amodel=amodel, device=device)
        if p.is_dir():
            return cls._from_transformers(str(p), local=True, device=device)
        if p.suffix in (".pt", ".pth", ".ckpt", ".bin", ".safetensors") or spec.startswith((".", "/", "~")):
            raise FileNotFoundError(f"CLAP checkpoint {spec!r} does not exist")
        return cls._from_transformers(spec, local=False, device=device)

    @classmethod
    def _tiny_random(cls, seed: int, dim: int, device) -> "ClapEmbedder":
        from transformers import ClapAudioConfig, ClapAudioModelWithProjection, ClapFeatureExtractor

        config = ClapAudioConfig(hidden_size=128, patch_embeds_hidden_size=16, depths=[1, 1, 1, 1],
                                 num_attention_heads=[1, 2, 2, 4], num_hidden_layers=4, projection_dim=int(dim))
        with _seeded(seed):
            model = ClapAudioModelWithProjection(config)
        description = (f"tiny RANDOM CLAP (transformers, {dim}-d, seed {seed}) — embeddings carry no pretrained "
                       f"meaning")
        _announce_random("ClapEmbedder", description)
        return cls(_HFBackend(model, ClapFeatureExtractor()), spec=TINY_RANDOM,
                   identity=f"clap:{TINY_RANDOM}:dim={dim}:seed={seed}:{_CLAP_PREP_VERSION}",
                   description=description, is_random=True, device=device)

    @classmethod
    def _from_laion_file(cls, path: Path, amodel: str | None, device) -> "ClapEmbedder":
        audio_sd = laion_audio_state_dict(_load_trusted_checkpoint(path))
        fused = sorted(k for k in audio_sd if ".fusion_model." in k or ".mel_conv" in k)
        if fused:
            raise ValueError(f"{path}: a fusion CLAP checkpoint (e.g. key {fused[0]!r}); only unfused laion-clap "
                             f"checkpoints are supported (e.g. 630k-audioset-best.pt, "
                             f"music_audioset_epoch_15_esc_90.14.pt)")
        w = audio_sd.get("audio_projection.0.weight")
        detected = _HTSAT_BY_WIDTH.get(int(w.shape[1])) if w is not None and w.ndim == 2 else None
        if amodel is None:
            if w is not None and detected is None:
                raise ValueError(f"{path}: cannot tell the laion-clap audio model from the checkpoint (audio "
                                 f"projection {None if w is None else tuple(w.shape)}); pass amodel='HTSAT-tiny', "
                                 f"'HTSAT-base' or another laion-clap model name")
            amodel = detected or "HTSAT-tiny"  # no projection key: the key check below names what is missing
        elif detected is not None and amodel in _HTSAT_BY_WIDTH.values() and detected != amodel:
            raise ValueError(f"{path}: audio width {w.shape[1]} means {detected}, but amodel={amodel!r} was asked")
        sig = _LAION_SIGNATURES.get(amodel)
        if sig is not None:  # fail fast, before the (seconds-long) build, when the keys are already known
            _check_laion_keys(path, amodel, audio_sd, sig)
        model, cfg = build_laion_clap(amodel)
        sig = {k: tuple(v.shape) for k, v in model.state_dict().items() if _is_laion_audio_key(k)}
        _LAION_SIGNATURES[amodel] = sig
        _check_laion_keys(path, amodel, audio_sd, sig)
        result = model.load_state_dict(audio_sd, strict=False)
        not_loaded = [k for k in result.missing_keys if _is_laion_audio_key(k)]
        if not_loaded:
            raise RuntimeError(f"{path}: audio weights not loaded: {not_loaded[:8]}")
        cfg_audio = cfg["audio_cfg"]
        if int(cfg_audio["sample_rate"]) != CLAP_SR:
            raise ValueError(f"laion-clap {amodel} expects {cfg_audio['sample_rate']} Hz, not {CLAP_SR}")
        backend = _LaionBackend(model, clip_samples=int(cfg_audio["clip_samples"]))
        real = path.resolve()
        return cls(backend, spec=str(path), identity=f"clap:laion:{amodel}:{real}:{_file_stamp(real)}:"
                                                     f"{_CLAP_PREP_VERSION}",
                   description=f"laion-clap {amodel} from {real}", is_random=False, device=device)

    @classmethod
    def _from_transformers(cls, spec: str, local: bool, device) -> "ClapEmbedder":
        from transformers import ClapAudioModelWithProjection, ClapFeatureExtractor

        from transformers.utils import logging as hf_logging

        # A ClapModel checkpoint also holds the text tower, which transformers reports key by key as unexpected
        # when loading the audio half: quiet that table, check the audio keys ourselves, and say it in one line.
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            model, info = ClapAudioModelWithProjection.from_pretrained(spec, output_loading_info=True)
        finally:
            hf_logging.set_verbosity(verbosity)
        ignored = info.get("unexpected_keys", [])
        if ignored:
            log.info("%s: ignored %d non-audio weights (text tower)", spec, len(ignored))
        missing = sorted(info.get("missing_keys", []))
        if missing:
            raise ValueError(f"{spec}: CLAP audio weights missing from the checkpoint: {', '.join(missing[:8])}"
                             + (f" ... ({len(missing)} in all)" if len(missing) > 8 else ""))
        mismatched = info.get("mismatched_keys", [])
        if mismatched:
            raise ValueError(f"{spec}: CLAP audio weights with the wrong shape: {mismatched[:8]}")
        try:
            fe = ClapFeatureExtractor.from_pretrained(spec)
        except (OSError, ValueError):
            if not local:
                raise
            log.warning("%s has no preprocessor_config.json: using the default ClapFeatureExtractor "
                        "(48 kHz, 64 mels, 10 s window)", spec)
            fe = ClapFeatureExtractor()
        if int(fe.sampling_rate) != CLAP_SR:
            raise ValueError(f"{spec}: feature extractor expects {fe.sampling_rate} Hz; chanmusic feeds {CLAP_SR} Hz")
        if getattr(model.config, "enable_fusion", False):
            raise ValueError(f"{spec}: fused CLAP models are not supported; use an unfused one")
        if local:
            stamp = _dir_stamp(Path(spec).resolve())
            ident = f"clap:hf-dir:{Path(spec).resolve()}:{stamp}"
        else:
            rev = getattr(model.config, "_commit_hash", None) or "unknown-revision"
            ident = f"clap:hf-hub:{spec}@{rev}"
        return cls(_HFBackend(model.float(), fe), spec=spec, identity=f"{ident}:{_CLAP_PREP_VERSION}",
                   description=f"transformers CLAP from {spec}", is_random=False, device=device)

    # ---------------------------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Embedding width (512 for every released CLAP)."""
        return self._backend.dim

    @property
    def clip_samples(self) -> int:
        """CLAP's input window in samples at :attr:`sample_rate` (480000 = 10 s)."""
        return self._backend.clip_samples

    def _prepare(self, clip: np.ndarray, sr: int) -> np.ndarray:
        x = resample(clip, sr, CLAP_SR)
        n = self.clip_samples
        if x.shape[0] > n:  # deterministic centre crop instead of the libraries' random crop
            start = (x.shape[0] - n) // 2
            x = x[start:start + n]
        return np.ascontiguousarray(x, dtype=np.float32)

    @torch.no_grad()
    def embed(self, audio: Any, sr: int, batch_size: int = 16) -> torch.Tensor:
        """Embed ``audio`` (``[B, S]`` or ``[S]`` float at ``sr`` Hz, numpy or torch, or a list of 1-D clips of
        any lengths) in chunks of ``batch_size``. Returns float32 ``[B, dim]`` on the CPU, unit L2 norm."""
        clips = _clip_list(audio)
        self.model.eval()
        out = []
        for i in range(0, len(clips), max(1, int(batch_size))):
            chunk = [self._prepare(c, sr) for c in clips[i:i + batch_size]]
            out.append(self._backend(chunk, self.device).float().cpu())
        return F.normalize(torch.cat(out), dim=-1)

    def __repr__(self) -> str:
        return f"ClapEmbedder({self.description!r}, dim={self.dim}, device={self.device})"


def load_clap(spec: str, device: str | torch.device = "cpu", seed: int = 0, **kwargs: Any) -> ClapEmbedder:
    """Same as :meth:`ClapEmbedder.from_config`."""
    return ClapEmbedder.from_config(spec, device=device, seed=seed, **kwargs)


# --------------------------------------------------------------------------------------------------------------
# AudioLDM
# --------------------------------------------------------------------------------------------------------------

_DEPRECATION_LOGGED = False


class _DropAudioLDMDeprecation(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not ("AudioLDMPipeline" in msg and "deprecated" in msg)


@contextlib.contextmanager
def _quiet_audioldm_deprecation() -> Iterator[None]:
    """diffusers (>= 0.33) logs a deprecation warning each time an ``AudioLDMPipeline`` is built; drop it and say
    it once ourselves. AudioLDM 1 is the AudioLDM whose UNet takes a single 512-d CLAP vector (AudioLDM 2's
    conditioning is a sequence), so it is the one we need."""
    global _DEPRECATION_LOGGED
    if not _DEPRECATION_LOGGED:
        log.info("diffusers marks AudioLDMPipeline as deprecated (no updates after 0.33.1); it is still used here "
                 "because AudioLDM 1 conditions on one 512-d CLAP vector. This notice is shown once.")
        _DEPRECATION_LOGGED = True
    filt = _DropAudioLDMDeprecation()
    loggers = [logging.getLogger("diffusers.pipelines.pipeline_utils"), logging.getLogger("diffusers")]
    for lg in loggers:
        lg.addFilter(filt)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*AudioLDM.*deprecated.*")
            yield
    finally:
        for lg in loggers:
            lg.removeFilter(filt)


def build_tiny_audioldm(seed: int = 0, cond_dim: int = CLAP_DIM):
    """A tiny randomly initialised ``AudioLDMPipeline`` with the real model's interface shapes.

    ``cond_dim``-d conditioning (UNet ``simple_projection`` class embedding, concatenated as in AudioLDM), 8 latent
    channels, VAE scale factor 4, 64 mel bins, a HiFi-GAN vocoder upsampling x160 to 16 kHz, AudioLDM-S's DDIM
    scheduler settings, default length 5.12 s (UNet sample size 128). ``tokenizer=None``; a tiny
    ``ClapTextModelWithProjection`` is present because the pipeline reads its dtype. About 0.7 M parameters.
    """
    from diffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import ClapTextConfig, ClapTextModelWithProjection, SpeechT5HifiGan, SpeechT5HifiGanConfig

    with _seeded(seed):
        unet = UNet2DConditionModel(
            block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, sample_size=128,
            in_channels=8, out_channels=8,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=(16, 32), attention_head_dim=8,
            class_embed_type="simple_projection", projection_class_embeddings_input_dim=int(cond_dim),
            class_embeddings_concat=True)
        vae = AutoencoderKL(
            block_out_channels=[8, 16, 16], in_channels=1, out_channels=1, latent_channels=8, norm_num_groups=8,
            down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3, layers_per_block=1)
        text_encoder = ClapTextModelWithProjection(ClapTextConfig(
            hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=1, vocab_size=100,
            max_position_embeddings=80, projection_dim=int(cond_dim), layer_norm_eps=1e-5))
        vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
            model_in_dim=N_MELS, sampling_rate=MEL_SR, upsample_initial_channel=64, upsample_rates=[5, 4, 2, 2, 2],
            upsample_kernel_sizes=[10, 8, 4, 4, 4], resblock_kernel_sizes=[3, 7],
            resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]], normalize_before=False,
            initializer_range=0.12))  # default 0.01 gives ~1e-10 output; 0.12 gives speech-level audio (std ~0.04)
    scheduler = DDIMScheduler(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, steps_offset=1, clip_sample=False, set_alpha_to_one=False)
    with _quiet_audioldm_deprecation():
        return AudioLDMPipeline(vae=vae, text_encoder=text_encoder, tokenizer=None, unet=unet, scheduler=scheduler,
                                vocoder=vocoder)


class AudioLDMGenerator:
    """AudioLDM 1 (diffusers ``AudioLDMPipeline``) driven by CLAP-space vectors.

    ``load(spec)``: ``spec`` is a local diffusers folder or hub id (e.g. ``cvssp/audioldm-s-full-v2``,
    cc-by-nc-sa-4.0), or ``"tiny-random"`` (:func:`build_tiny_audioldm`, announced as random).

    ``generate(cond [B, D])`` L2-normalises each vector (AudioLDM normalises the CLAP embeddings it conditions on)
    and passes it as the 2-D ``prompt_embeds`` that the UNet's FiLM-style class embedding takes. With classifier-free
    guidance (``guidance_scale > 1``) the unconditional branch gets ``negative`` embeddings: ``"zeros"`` (default;
    an all-zero vector, i.e. "no condition") or ``"empty_text"`` (the pipeline's CLAP text embedding of ``""``,
    what diffusers uses for text prompts; needs a tokenizer, so not the tiny model). Which one AudioLDM was trained
    with as its dropped condition is not verified here.
    """

    def __init__(self, pipe, *, spec: str, identity: str, description: str, is_random: bool,
                 device: str | torch.device = "cpu"):
        self.pipe = pipe
        self.spec = spec
        self.identity = identity
        self.description = description
        self.is_random = is_random
        self.device = torch.device(device)
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self._empty_text: torch.Tensor | None = None

    @classmethod
    def load(cls, spec: str, device: str | torch.device = "cpu", seed: int = 0, *,
             dtype: torch.dtype | None = None) -> "AudioLDMGenerator":
        """Load the pipeline named by ``spec``. ``seed`` seeds the weights of ``"tiny-random"`` only; ``dtype``
        (e.g. ``torch.float16`` on a GPU) applies to real checkpoints."""
        spec = str(spec)
        if spec == TINY_RANDOM:
            pipe = build_tiny_audioldm(seed=seed)
            description = (f"tiny RANDOM AudioLDM (diffusers, seed {seed}) — generated audio carries no pretrained "
                           f"meaning")
            _announce_random("AudioLDMGenerator", description)
            return cls(pipe, spec=spec, identity=f"audioldm:{TINY_RANDOM}:seed={seed}", description=description,
                       is_random=True, device=device)
        from diffusers import AudioLDMPipeline

        p = Path(spec).expanduser()
        if spec.startswith((".", "/", "~")) and not p.is_dir():
            raise FileNotFoundError(f"AudioLDM folder {spec!r} does not exist")
        kwargs: dict[str, Any] = {"torch_dtype": dtype} if dtype is not None else {}
        index = p / "model_index.json"
        if p.is_dir() and index.is_file():
            import json

            # components saved as None (e.g. our tiny pipeline's tokenizer) must be passed as None explicitly
            for name, value in json.loads(index.read_text()).items():
                if not name.startswith("_") and isinstance(value, list) and all(v is None for v in value):
                    kwargs[name] = None
        with _quiet_audioldm_deprecation():
            pipe = AudioLDMPipeline.from_pretrained(str(p) if p.is_dir() else spec, **kwargs)
        if p.is_dir():
            identity = f"audioldm:dir:{p.resolve()}:{_dir_stamp(p.resolve())}"
        else:
            identity = f"audioldm:hub:{spec}@{getattr(pipe.unet.config, '_commit_hash', None) or 'unknown-revision'}"
        return cls(pipe, spec=spec, identity=identity, description=f"AudioLDM from {spec}", is_random=False,
                   device=device)

    # ---------------------------------------------------------------------------------------------------------
    @property
    def conditioning_dim(self) -> int:
        """Width of the conditioning vector (the UNet's class-projection input; 512 for AudioLDM-S/M/L)."""
        return int(self.pipe.unet.config.projection_class_embeddings_input_dim)

    @property
    def sample_rate(self) -> int:
        return int(self.pipe.vocoder.config.sampling_rate)

    @property
    def default_length_s(self) -> float:
        """Length generated when ``audio_length_s`` is None (5.12 s for the released models and the tiny one)."""
        vsf = 2 ** (len(self.pipe.vae.config.block_out_channels) - 1)
        return (self.pipe.unet.config.sample_size * vsf * float(np.prod(self.pipe.vocoder.config.upsample_rates))
                / self.sample_rate)

    def _negative(self, kind: str, n: int, like: torch.Tensor) -> torch.Tensor:
        if kind == "zeros":
            return torch.zeros_like(like)
        if kind == "empty_text":
            if self.pipe.tokenizer is None:
                raise ValueError("negative='empty_text' needs a pipeline with a tokenizer")
            if self._empty_text is None:
                tok = self.pipe.tokenizer([""], padding="max_length", max_length=self.pipe.tokenizer.model_max_length,
                                          truncation=True, return_tensors="pt")
                with torch.no_grad():
                    e = self.pipe.text_encoder(tok.input_ids.to(self.device),
                                               attention_mask=tok.attention_mask.to(self.device)).text_embeds
                self._empty_text = F.normalize(e.float(), dim=-1)
            return self._empty_text.to(like.device, like.dtype).expand(n, -1).clone()
        raise ValueError(f"negative must be 'zeros' or 'empty_text', got {kind!r}")

    @torch.no_grad()
    def generate(self, cond: Any, audio_length_s: float | None = None, num_inference_steps: int = 10,
                 guidance_scale: float = 2.5, seed: int = 0, batch_size: int = 8,
                 negative: str = "zeros") -> np.ndarray:
        """Generate one clip per row of ``cond`` (``[B, D]`` or ``[D]``, D = :attr:`conditioning_dim`).

        Returns float32 numpy ``[B, samples]`` at :attr:`sample_rate` (16 kHz). Defaults follow diffusers'
        AudioLDM defaults (10 DDIM steps, guidance 2.5, 5.12 s). Clip ``i`` starts from noise drawn by its own
        ``torch.Generator`` seeded with ``seed + i``, so results do not depend on ``batch_size``.
        """
        c = cond if isinstance(cond, torch.Tensor) else torch.from_numpy(_to_numpy(cond))
        c = c.detach().float()
        if c.ndim == 1:
            c = c[None]
        if c.ndim != 2 or c.shape[1] != self.conditioning_dim:
            raise ValueError(f"cond must be [B, {self.conditioning_dim}], got {tuple(c.shape)}")
        if not torch.isfinite(c).all():
            raise ValueError("cond contains NaN or inf")
        c = F.normalize(c, dim=-1)
        dtype = self.pipe.text_encoder.dtype
        outs = []
        for i in range(0, c.shape[0], max(1, int(batch_size))):
            chunk = c[i:i + batch_size].to(self.device, dtype)
            gens = [torch.Generator("cpu").manual_seed(int(seed) + i + j) for j in range(chunk.shape[0])]
            kwargs = dict(prompt_embeds=chunk, num_inference_steps=int(num_inference_steps),
                          guidance_scale=float(guidance_scale), generator=gens, output_type="np",
                          audio_length_in_s=audio_length_s)
            if guidance_scale > 1.0:
                kwargs["negative_prompt_embeds"] = self._negative(negative, chunk.shape[0], chunk)
            outs.append(np.asarray(self.pipe(**kwargs).audios, dtype=np.float32).reshape(chunk.shape[0], -1))
        return np.concatenate(outs, axis=0)

    def __repr__(self) -> str:
        return f"AudioLDMGenerator({self.description!r}, cond={self.conditioning_dim}, device={self.device})"


def load_audioldm(spec: str, device: str | torch.device = "cpu", seed: int = 0, **kwargs: Any) -> AudioLDMGenerator:
    """Same as :meth:`AudioLDMGenerator.load`."""
    return AudioLDMGenerator.load(spec, device=device, seed=seed, **kwargs)

"""CLAP audio embeddings: :class:`ClapEmbedder` / :func:`load_clap`, and the preprocessing every backend shares
(resample to 48 kHz, deterministic centre crop to CLAP's 10 s window).

The backends live in :mod:`chanmusic.audio.clap_laion` (laion-clap ``.pt`` files) and
:mod:`chanmusic.audio.clap_hf` (transformers CLAP, and ``"tiny-random"``); both import their libraries lazily.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from chanmusic.audio._common import CLAP_DIM, CLAP_SR, TINY_RANDOM, to_numpy
from chanmusic.audio.clap_hf import load_hf_clap, tiny_random_clap
from chanmusic.audio.clap_laion import load_laion_clap
from chanmusic.core.resample import resample


def laion_clap_installed() -> bool:
    """Whether laion-clap (the ``[laion]`` extra) is importable; found without importing it."""
    return importlib.util.find_spec("laion_clap") is not None


class ClapBackend(Protocol):
    """What :class:`ClapEmbedder` needs of a backend: the model, its width and window, and a batch call."""

    kind: str
    model: torch.nn.Module
    dim: int
    clip_samples: int

    def __call__(self, clips: list[np.ndarray], device: torch.device) -> torch.Tensor:
        """``clips``: 1-D float32 48 kHz waveforms of at most ``clip_samples``. Returns ``[len(clips), dim]``."""


def _clip_list(audio: Any) -> list[np.ndarray]:
    """``[B, S]`` / ``[S]`` array or tensor, or a sequence of 1-D clips -> list of 1-D float32 numpy arrays."""
    if isinstance(audio, (torch.Tensor, np.ndarray)):
        x = to_numpy(audio)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2:
            raise ValueError(f"expected [B, S] or [S] audio, got shape {x.shape}")
        clips = list(x)
    else:
        clips = [to_numpy(c) for c in audio]
    for i, c in enumerate(clips):
        if c.ndim != 1 or c.shape[0] == 0:
            raise ValueError(f"clip {i}: expected a non-empty 1-D waveform, got shape {c.shape}")
        if not np.isfinite(c).all():
            raise ValueError(f"clip {i}: waveform contains NaN or inf")
    return clips


class ClapEmbedder:
    """CLAP audio embeddings: ``embed(audio [B, S], sr) -> [B, D]`` float32, L2-normalised, on the CPU.

    Build with :meth:`from_config` (or :func:`load_clap`); ``spec`` is one of

    * a path to a laion-clap ``.pt`` checkpoint (e.g. ``630k-audioset-best.pt``, HTSAT-tiny, or the music CLAP
      ``music_audioset_epoch_15_esc_90.14.pt``, HTSAT-base). Only unfused checkpoints are supported. The
      architecture is read from the checkpoint (audio width 768 -> HTSAT-tiny, 1024 -> HTSAT-base) unless
      ``amodel`` is given. Only the audio weights are loaded; any missing or unexpected audio key is an error.
      With laion-clap installed (``pip install 'chanmusic[laion]'``) laion-clap's own model reads it; without it
      (the default install) transformers' CLAP does, through :mod:`chanmusic.audio.clap_convert` (same weights
      and mel settings; embeddings agree to 1e-7). The two get different cache identities.
      Read with :func:`chanmusic.core.checkpoints.safe_load` (allow-listed unpickling: no code from the file runs).
    * a local directory or hub id of a transformers CLAP (``ClapModel`` or ``ClapAudioModelWithProjection``
      weights, e.g. ``laion/clap-htsat-unfused`` or ``laion/larger_clap_music``). A local folder without
      ``preprocessor_config.json`` gets the default ``ClapFeatureExtractor`` (48 kHz, 64 mels, 10 s), with a warning.
    * ``"tiny-random"``: a tiny randomly initialised transformers CLAP (``dim``-d, default 512), seeded by
      ``seed``. Its embeddings carry no pretrained meaning; it exists so that the pipeline runs offline.

    Preprocessing is deterministic: audio is resampled to 48 kHz (polyphase,
    :func:`chanmusic.core.resample.resample`); a clip longer than CLAP's 10 s window is centre-cropped to 10 s (the
    libraries would pick a random crop); shorter clips are tiled with whole copies and zero-padded to 10 s
    ("repeatpad", as both libraries do). The laion-clap path also quantises through int16 as laion-clap does.
    Inference runs in eval mode under ``torch.no_grad``.
    """

    sample_rate = CLAP_SR

    def __init__(self, backend: ClapBackend, *, spec: str, identity: str, description: str, is_random: bool,
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
            backend, identity, description = tiny_random_clap(seed=seed, dim=dim)
            return cls(backend, spec=TINY_RANDOM, identity=identity, description=description, is_random=True,
                       device=device)
        p = Path(spec).expanduser()
        if p.is_file():
            if laion_clap_installed():
                backend, identity, description = load_laion_clap(p, amodel=amodel)
            else:  # the default install: the same weights through transformers
                from chanmusic.audio.clap_convert import load_laion_as_transformers  # (lazy: also a __main__)

                backend, identity, description = load_laion_as_transformers(p)
            return cls(backend, spec=str(p), identity=identity, description=description, is_random=False,
                       device=device)
        local = p.is_dir()
        if local:
            spec = str(p)
        elif p.suffix in (".pt", ".pth", ".ckpt", ".bin", ".safetensors") or spec.startswith((".", "/", "~")):
            raise FileNotFoundError(f"CLAP checkpoint {spec!r} does not exist")
        backend, identity, description = load_hf_clap(spec, local=local)
        return cls(backend, spec=spec, identity=identity, description=description, is_random=False, device=device)

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

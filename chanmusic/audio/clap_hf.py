"""The transformers backend of :class:`chanmusic.audio.clap.ClapEmbedder`: a ``ClapAudioModelWithProjection``
from a local folder or hub id, or the tiny randomly initialised one (``"tiny-random"``) for offline demos and tests.

transformers is imported inside the functions that need it.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chanmusic.audio._common import CLAP_PREP_VERSION, CLAP_SR, TINY_RANDOM, announce_random, dir_stamp, seeded

log = logging.getLogger(__name__)


class HFClapBackend:
    """transformers ``ClapAudioModelWithProjection`` + ``ClapFeatureExtractor`` (``rand_trunc``, ``repeatpad``)."""

    kind = "transformers"

    def __init__(self, model: torch.nn.Module, feature_extractor: Any, int16: bool = False):
        self.model = model
        self.fe = feature_extractor
        self.int16 = int16  # quantise through int16 first, as laion-clap does (for laion-clap files)
        self.dim = int(model.config.projection_dim)
        self.clip_samples = int(feature_extractor.nb_max_samples)

    def __call__(self, clips: list[np.ndarray], device: torch.device) -> torch.Tensor:
        """``clips``: 1-D float32 48 kHz waveforms of at most ``clip_samples``. Returns ``[len(clips), dim]``."""
        if self.int16:
            clips = [((np.clip(c, -1.0, 1.0) * 32767.0).astype(np.int16) / 32767.0).astype(np.float32) for c in clips]
        # clips are <= nb_max_samples already, so 'rand_trunc' never draws a random crop
        feats = self.fe(clips, sampling_rate=self.fe.sampling_rate, truncation="rand_trunc", padding="repeatpad",
                        return_tensors="pt")
        out = self.model(input_features=feats["input_features"].to(device, self.model.dtype),
                         is_longer=feats["is_longer"].to(device))
        return out.audio_embeds


def tiny_random_clap(seed: int, dim: int) -> tuple[HFClapBackend, str, str]:
    """A tiny randomly initialised transformers CLAP (``dim``-d), its weights drawn with ``seed`` (the caller's RNG
    is left alone), announced as random. Returns ``(backend, identity, description)``."""
    from transformers import ClapAudioConfig, ClapAudioModelWithProjection, ClapFeatureExtractor

    config = ClapAudioConfig(hidden_size=128, patch_embeds_hidden_size=16, depths=[1, 1, 1, 1],
                             num_attention_heads=[1, 2, 2, 4], num_hidden_layers=4, projection_dim=int(dim))
    with seeded(seed):
        model = ClapAudioModelWithProjection(config)
    description = (f"tiny RANDOM CLAP (transformers, {dim}-d, seed {seed}) — embeddings carry no pretrained "
                   f"meaning")
    announce_random("ClapEmbedder", description)
    return (HFClapBackend(model, ClapFeatureExtractor()),
            f"clap:{TINY_RANDOM}:dim={dim}:seed={seed}:{CLAP_PREP_VERSION}", description)


def load_hf_clap(spec: str, local: bool) -> tuple[HFClapBackend, str, str]:
    """The audio half of the transformers CLAP at ``spec`` (a local folder if ``local``, else a hub id).

    Missing or mis-shaped audio weights are an error; a ``ClapModel``'s text tower is ignored (said in one line).
    A local folder without ``preprocessor_config.json`` gets the default ``ClapFeatureExtractor``, with a warning.
    Returns ``(backend, identity, description)``.
    """
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
        stamp = dir_stamp(Path(spec).resolve())
        ident = f"clap:hf-dir:{Path(spec).resolve()}:{stamp}"
    else:
        rev = getattr(model.config, "_commit_hash", None) or "unknown-revision"
        ident = f"clap:hf-hub:{spec}@{rev}"
    return HFClapBackend(model.float(), fe), f"{ident}:{CLAP_PREP_VERSION}", f"transformers CLAP from {spec}"

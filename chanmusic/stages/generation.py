"""Per-window seeded AudioLDM generation for the reconstruction stage: a window's diffusion noise is a function of
(generation seed, window id) only, so its audio does not depend on batching, ``max_generate`` or the process count."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["segment_seed", "generate_windows"]


def segment_seed(generation_seed: int, segment: int) -> int:
    """The diffusion noise seed of one test window: a function of (seed, window id) only, so the audio generated for
    a window does not depend on batching, ``max_generate`` or the number of processes."""
    return (int(generation_seed) * 1_000_003 + int(segment)) % (2 ** 63)


@torch.no_grad()
def generate_windows(generator: Any, cond: Tensor, segments: Sequence[int], audio_length_s: float, generation_seed: int,
                     num_inference_steps: int, guidance_scale: float, negative: str, batch_size: int) -> np.ndarray:
    """AudioLDM audio ``[B, S]`` (16 kHz) for conditioning ``cond [B, 512]``, window ``segments[i]``'s noise
    drawn from :func:`segment_seed` (``AudioLDMGenerator.generate`` seeds by batch position instead, which would
    make a window's audio depend on batching). Same normalisation, guidance and negative embedding as
    ``AudioLDMGenerator.generate`` (``generator``, an ``AudioLDMGenerator``); with one window and seed s both give
    the same audio. ``batch_size`` windows per pipeline call."""
    gen = generator
    pipe = gen.pipe
    c = F.normalize(cond.detach().float(), dim=-1)
    dtype = pipe.text_encoder.dtype
    vsf = pipe.vae_scale_factor
    up = float(np.prod(pipe.vocoder.config.upsample_rates)) / float(pipe.vocoder.config.sampling_rate)
    height = int(audio_length_s / up)
    if height % vsf:
        height = int(np.ceil(height / vsf)) * vsf
    shape = (1, int(pipe.unet.config.in_channels), height // vsf, int(pipe.vocoder.config.model_in_dim) // vsf)
    seeds = [segment_seed(generation_seed, s) for s in segments]
    outs = []
    bs = max(1, int(batch_size))
    for i in range(0, len(c), bs):
        chunk = c[i:i + bs].to(gen.device, dtype)
        lat = torch.cat([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s), dtype=dtype)
                         for s in seeds[i:i + bs]])
        kwargs = dict(prompt_embeds=chunk, num_inference_steps=int(num_inference_steps),
                      guidance_scale=float(guidance_scale), latents=lat.to(gen.device), output_type="np",
                      audio_length_in_s=float(audio_length_s))
        if guidance_scale > 1.0:
            kwargs["negative_prompt_embeds"] = gen._negative(negative, chunk.shape[0], chunk)
        outs.append(np.asarray(pipe(**kwargs).audios, dtype=np.float32).reshape(chunk.shape[0], -1))
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)

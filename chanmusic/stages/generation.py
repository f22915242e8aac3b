"""Generation for the reconstruction stage: which test windows, the AudioLDM generator and the CLAP check, and
per-window seeded generation (a window's diffusion noise is a function of (generation seed, window id) only, so its
audio does not depend on batching, ``max_generate`` or the process count)."""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

log = logging.getLogger("chanmusic")

__all__ = ["segment_seed", "generate_windows", "chosen_windows", "load_generator", "check_clap", "log_clips"]


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


def chosen_windows(test_rows: np.ndarray, max_generate: int | None, generation_seed: int) -> np.ndarray:
    """Segment ids of the test windows to generate for (sorted): all, or ``max_generate`` of them drawn with
    ``generation_seed`` (the same draw for test and predict)."""
    rows = np.sort(np.asarray(test_rows, dtype=np.int64))
    if max_generate is None or max_generate >= len(rows):
        return rows
    rng = np.random.default_rng(generation_seed)
    return np.sort(rng.choice(rows, size=int(max_generate), replace=False))


def load_generator(current: Any, spec: str, seed: int, dtype: str | None, device: Any) -> Any:
    """The AudioLDM generator of ``spec`` on ``device`` (``current`` moved there when it already is that one)."""
    from chanmusic.audio import AudioLDMGenerator

    if current is None or current.spec != str(spec):
        torch_dtype = None if dtype in (None, "float32") else getattr(torch, dtype)
        return AudioLDMGenerator.load(spec, device=device, seed=seed, dtype=torch_dtype)
    current.pipe.to(device)
    current.device = torch.device(device)
    return current


def check_clap(clap_model: Any, true_audio: Any, raw_clap: Tensor, music: int) -> None:
    """Embed one true clip with ``clap_model`` and require the cached embedding back (cosine ≥ 0.999): the CLAP
    that scores the generated audio must be the one the cache was built with. Advisory when the audio is missing."""
    try:
        clip = true_audio.clip(music)
    except Exception as e:  # noqa: BLE001 - audio unavailable: the check is advisory
        log.warning("reconstruct: could not read the true audio to check the CLAP (%s); skipping the check", e)
        return
    emb = clap_model.embed(clip[None], true_audio.sr)[0]
    cos = float(F.cosine_similarity(emb, raw_clap[music], dim=0))
    if cos < 0.999:
        raise ValueError(f"the CLAP loaded for reconstruction ({clap_model.description}) does not reproduce "
                         f"the cached embedding of music segment {music} (cosine {cos:.4f}): the cache was built "
                         f"with another CLAP or other audio files; rebuild it or fix data.clap")


def log_clips(logger: Any, chosen: np.ndarray, n_clips: int, segments: Sequence[int], music: Sequence[int],
              audio: np.ndarray, true_audio: Any) -> int:
    """Write the generated and the true audio of the first ``n_clips`` chosen windows (lowest segment ids) that are
    among ``segments`` as TensorBoard audio: tags ``reconstruct/window_<segment>/generated`` and ``.../true``.

    ``audio``: ``[B, S]`` generated at 16 kHz (AudioLDM's rate) for ``segments`` / ``music`` (``[B]`` each); the true clip is the
    cache's cut of the song (``true_audio.clip``). Nothing without a logger that writes audio (TensorBoard's
    ``add_audio``). Returns how many windows were written."""
    from chanmusic.audio.mel import MEL_SR

    experiment = getattr(logger, "experiment", None) if logger is not None else None
    if n_clips <= 0 or not hasattr(experiment, "add_audio"):
        return 0
    first = set(np.asarray(chosen)[:int(n_clips)].tolist())
    written = 0
    for i, (segment, m) in enumerate(zip(segments, music)):
        if int(segment) not in first:
            continue
        tag = f"reconstruct/window_{int(segment):06d}"
        experiment.add_audio(f"{tag}/generated", torch.from_numpy(np.asarray(audio[i], np.float32))[None], 0,
                             sample_rate=MEL_SR)
        experiment.add_audio(f"{tag}/true", torch.from_numpy(true_audio.clip(int(m)))[None], 0,
                             sample_rate=int(true_audio.sr))
        written += 1
    return written

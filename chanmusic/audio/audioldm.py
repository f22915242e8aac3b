"""AudioLDM 1 (diffusers ``AudioLDMPipeline``) conditioned on 512-d CLAP vectors: :class:`AudioLDMGenerator` /
:func:`load_audioldm`, the tiny random pipeline for offline demos and tests (:func:`build_tiny_audioldm`), and the
filter that turns diffusers' per-build deprecation warning into one notice.

diffusers and transformers are imported inside the functions that need them.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from chanmusic.audio._common import CLAP_DIM, TINY_RANDOM, announce_random, dir_stamp, seeded, to_numpy
from chanmusic.audio.mel import MEL_SR, N_MELS

if TYPE_CHECKING:
    from diffusers import AudioLDMPipeline

log = logging.getLogger(__name__)

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


def build_tiny_audioldm(seed: int = 0, cond_dim: int = CLAP_DIM) -> AudioLDMPipeline:
    """A tiny randomly initialised ``AudioLDMPipeline`` with the real model's interface shapes.

    ``cond_dim``-d conditioning (UNet ``simple_projection`` class embedding, concatenated as in AudioLDM), 8 latent
    channels, VAE scale factor 4, 64 mel bins, a HiFi-GAN vocoder upsampling x160 to 16 kHz, AudioLDM-S's DDIM
    scheduler settings, default length 5.12 s (UNet sample size 128). ``tokenizer=None``; a tiny
    ``ClapTextModelWithProjection`` is present because the pipeline reads its dtype. About 0.7 M parameters.
    """
    from diffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import ClapTextConfig, ClapTextModelWithProjection, SpeechT5HifiGan, SpeechT5HifiGanConfig

    with seeded(seed):
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

    def __init__(self, pipe: AudioLDMPipeline, *, spec: str, identity: str, description: str, is_random: bool,
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
            announce_random("AudioLDMGenerator", description)
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
            identity = f"audioldm:dir:{p.resolve()}:{dir_stamp(p.resolve())}"
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
        c = cond if isinstance(cond, torch.Tensor) else torch.from_numpy(to_numpy(cond))
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

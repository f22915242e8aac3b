"""LaBraM's neural tokenizer (VQ-NSP: vector-quantised neural spectrum prediction) over braindecode's ``Labram``.

Official: ``935963004/LaBraM`` ``modeling_vqnsp.py`` (``VQNSP``), ``norm_ema_quantizer.py``
(``NormEMAVectorQuantizer``), ``engine_for_vqnsp.py``. braindecode 1.8.1 has the LaBraM transformer but no tokenizer,
quantizer or decoder, so this module builds the official one from braindecode pieces:

- **encoder**: ``braindecode.models.Labram`` in its tokenizer mode (temporal conv patch embedding, position
  embedding by channel name, ``use_mean_pooling=True`` so patch tokens leave through ``fc_norm``) — the official
  encoder is the same ``NeuralTransformer`` (``qkv_bias=True``, no q/k norm, no layer scale);
- **quantizer**: :class:`NormEMAQuantizer`, the official one: l2-normalised codes and codebook, nearest code, EMA
  codebook update (``decay``), optional k-means (cosine) initialisation on the first batch, commitment loss
  ``beta · ‖sg(z_q) − z‖²``, straight-through gradient;
- **decoder**: a braindecode ``Labram`` whose patch embedding is replaced by the official decoder's ``1×1``
  projection of the code vectors (``PatchEmbed(patch_size=1, in_chans=code_dim)``: one token per channel × patch,
  keeping braindecode's position/time embeddings and blocks). braindecode's own "neural decoder" mode averages
  over channels (its documented modification), so it cannot be the official decoder;
- **targets**: per patch, the amplitude and phase of the 200-point FFT, each standardised per sample
  (``std_norm``), predicted by two ``Linear-Tanh-Linear`` heads; loss = commitment + MSE(amplitude) + MSE(phase).

``codes(x, ch_names)`` gives the token ids ``[B, C·P]`` (channel-major) that LaBraM's masked EEG modelling predicts.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NormEMAQuantizer", "VQNSP", "spectral_targets"]


def _l2(t: Tensor) -> Tensor:
    return F.normalize(t, p=2, dim=-1)


class NormEMAQuantizer(nn.Module):
    """Official ``NormEMAVectorQuantizer``: ``z [N, d]`` -> (``z_q [N, d]`` straight-through, loss, ids ``[N]``)."""

    def __init__(self, n_codes: int, code_dim: int, beta: float = 1.0, decay: float = 0.99, kmeans_init: bool = True,
                 kmeans_iters: int = 10):
        super().__init__()
        self.n_codes, self.beta, self.decay, self.kmeans_iters = n_codes, beta, decay, kmeans_iters
        w = torch.zeros(n_codes, code_dim) if kmeans_init else _l2(torch.randn(n_codes, code_dim))
        self.register_buffer("codebook", w)
        self.register_buffer("initted", torch.tensor(not kmeans_init))
        self.register_buffer("usage", torch.zeros(n_codes))

    @torch.no_grad()
    def _kmeans_init(self, z: Tensor) -> None:
        """Official ``kmeans(..., use_cosine_sim=True)``: codes from random samples, 10 cosine k-means steps."""
        idx = torch.randperm(len(z), device=z.device)[: self.n_codes] if len(z) >= self.n_codes else \
            torch.randint(0, len(z), (self.n_codes,), device=z.device)
        means = z[idx]
        for _ in range(self.kmeans_iters):
            buckets = (z @ means.t()).argmax(-1)
            bins = torch.bincount(buckets, minlength=self.n_codes)
            new = torch.zeros_like(means).index_add_(0, buckets, z) / bins.clamp_min(1).unsqueeze(1)
            means = torch.where((bins == 0).unsqueeze(1), means, _l2(new))
        self.codebook.copy_(means)
        self.initted.fill_(True)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z = _l2(z)
        if not bool(self.initted):
            self._kmeans_init(z.detach())
        ids = (z @ self.codebook.t()).argmax(-1)  # nearest unit vector = largest cosine
        z_q = self.codebook[ids]
        with torch.no_grad():
            bins = torch.bincount(ids, minlength=self.n_codes).to(z.dtype)
            self.usage.mul_(self.decay).add_(bins, alpha=1 - self.decay)
            if self.training:  # EMA of each used code towards the mean of its assigned vectors, re-normalised
                mean = torch.zeros_like(self.codebook).index_add_(0, ids, z.detach()) / bins.clamp_min(1).unsqueeze(1)
                mean = torch.where((bins == 0).unsqueeze(1), self.codebook, _l2(mean))
                self.codebook.copy_(_l2(self.codebook * self.decay + mean * (1 - self.decay)))
        loss = self.beta * F.mse_loss(z_q.detach(), z)
        return z + (z_q - z).detach(), loss, ids


def spectral_targets(x: Tensor, patch_size: int) -> tuple[Tensor, Tensor]:
    """``x [B, C, P·patch]`` -> (amplitude, phase) ``[B, C·P, patch]`` of each patch's FFT, each standardised per
    sample over channels, patches and bins (official ``VQNSP.forward`` + ``std_norm``)."""
    b, c, t = x.shape
    f = torch.fft.fft(x.reshape(b, c, t // patch_size, patch_size), dim=-1)

    def std_norm(v: Tensor) -> Tensor:
        return (v - v.mean(dim=(1, 2, 3), keepdim=True)) / v.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)

    return std_norm(f.abs()).flatten(1, 2), std_norm(torch.angle(f)).flatten(1, 2)


class _CodeEmbed(nn.Module):
    """The official decoder's patch embedding: ``[B, C, P·code_dim]`` code vectors -> ``[B, C·P, D]`` by a 1×1
    projection (a Linear over ``code_dim``)."""

    def __init__(self, code_dim: int, embed_dim: int, n_patches: int):
        super().__init__()
        self.code_dim, self.n_patchs = code_dim, n_patches
        self.proj = nn.Linear(code_dim, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        b, c, _ = x.shape
        return self.proj(x.reshape(b, c * self.n_patchs, self.code_dim))


def _labram(n_times: int, n_chans: int, embed_dim: int, depth: int, heads: int, patch_size: int) -> nn.Module:
    from braindecode.models import Labram

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="braindecode")
        return Labram(n_times=n_times, n_outputs=0, n_chans=n_chans, sfreq=200.0, patch_size=patch_size,
                      embed_dim=embed_dim, conv_out_channels=embed_dim // (patch_size // 8), num_layers=depth,
                      num_heads=heads, qkv_bias=True, qk_norm=None, init_values=None, use_mean_pooling=True)


class VQNSP(nn.Module):
    """The tokenizer (see the module docstring). Input: the LaBraM model input ``x [B, C, P·200]`` (µV/100, 200 Hz)
    with its vocabulary names ``ch_names``.

    Args:
        n_chans, n_times: the model input's channels and samples (``LaBraMEncoder.n_model_channels``,
            ``model_times``). embed_dim, depth, heads: encoder size (official base: 200, 12, 10).
        decoder_depth: decoder blocks (official 3). n_codes, code_dim: codebook (official README: 8192 × 64).
        decay: EMA decay of the codebook (official 0.99). kmeans_init: official ``--quantize_kmeans_init``.
    """

    def __init__(self, n_chans: int, n_times: int, embed_dim: int = 200, depth: int = 12, heads: int = 10,
                 decoder_depth: int = 3, n_codes: int = 8192, code_dim: int = 64, decay: float = 0.99,
                 kmeans_init: bool = True, patch_size: int = 200):
        super().__init__()
        self.patch_size, self.n_patches, self.code_dim = patch_size, n_times // patch_size, code_dim
        self.encoder = _labram(n_times, n_chans, embed_dim, depth, heads, patch_size)
        self.decoder = _labram(n_times, n_chans, embed_dim, decoder_depth, heads, patch_size)
        self.decoder.patch_embed = nn.Sequential(OrderedDict(segment_patch=_CodeEmbed(code_dim, embed_dim, self.n_patches)))
        self.quantizer = NormEMAQuantizer(n_codes, code_dim, decay=decay, kmeans_init=kmeans_init)

        def task(out: int) -> nn.Sequential:
            layer = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.Tanh(), nn.Linear(embed_dim, out))
            for m in layer:
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=0.02)
                    nn.init.zeros_(m.bias)
            return layer

        self.encode_task = task(code_dim)
        self.decode_amplitude = task(patch_size)
        self.decode_phase = task(patch_size)

    def encode(self, x: Tensor, ch_names: Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
        """-> (quantised codes ``[B, C·P, code_dim]``, commitment loss, ids ``[B, C·P]``)."""
        feats = self.encoder(x, return_features=True, ch_names=list(ch_names))["features"]
        z_q, loss, ids = self.quantizer(self.encode_task(feats).flatten(0, 1))
        return z_q.view(feats.shape[0], -1, self.code_dim), loss, ids.view(feats.shape[0], -1)

    @torch.no_grad()
    def codes(self, x: Tensor, ch_names: Sequence[str]) -> Tensor:
        """Token ids ``[B, C·P]`` (channel-major) of ``x``."""
        return self.encode(x, ch_names)[2]

    def forward(self, x: Tensor, ch_names: Sequence[str]) -> tuple[Tensor, dict[str, Tensor]]:
        """-> (loss, parts: ``quant``, ``amplitude``, ``phase``) of VQ-NSP on ``x [B, C, P·200]``."""
        amp, phase = spectral_targets(x, self.patch_size)
        z_q, quant, _ = self.encode(x, ch_names)
        b, n, d = z_q.shape
        codes = z_q.view(b, x.shape[1], self.n_patches * d)  # channel-major [B, C, P·code_dim]
        feats = self.decoder(codes, return_features=True, ch_names=list(ch_names))["features"]
        rec_amp = F.mse_loss(self.decode_amplitude(feats), amp)
        rec_phase = F.mse_loss(self.decode_phase(feats), phase)
        return quant + rec_amp + rec_phase, {"quant": quant.detach(), "amplitude": rec_amp.detach(),
                                             "phase": rec_phase.detach()}

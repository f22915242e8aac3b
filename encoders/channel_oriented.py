"""Channel-oriented EEG encoder: every (electrode, time patch) is its own token.

The paper's central design (Qing, Lu & Li): no mixing across electrodes before the transformer, so each
token keeps its channel identity, a channel mask can *remove* tokens (structured channel dropout,
missing electrodes) instead of zero-filling them, and a readout can keep channel identity.

The parts it shares with ``encoders.block_tokens`` (band power, the token transformer) are in
``encoders.token_transformer``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from encoders.base import EEGEncoder, EncoderOutput
from encoders.channel_embedding import LookupChannelEmbedding, PositionChannelEmbedding, channel_positions
from chanmusic.core.electrodes import DEFAULT_MONTAGE
from encoders.token_gain import TokenGain
from encoders.token_skip import TokenLinearSkip
from encoders.token_transformer import BandPower, TokenTransformer, init_weights

CHANNEL_EMBEDDINGS = ("lookup", "position")


class ChannelOrientedEncoder(EEGEncoder):
    """Channel-wise tokens: one token per (electrode, time patch), a CLS token, a channel-keeping token grid.

    A channel mask removes tokens (left out of attention, outputs exactly 0, ``token_mask`` False), so a masked
    channel set gives the output of the same data with those electrodes physically absent. Token layout, shapes,
    the channel embeddings and the CPU / GPU sizes: docs/model.md ("The encoder").

    Args:
        n_channels: electrodes of the full montage (linked from the data).
        sfreq: sampling rate in Hz (linked from the data).
        n_times: samples per window (linked from the data).
        ch_names: electrode names (linked from the data).
        embed_dim: token width D.
        depth: transformer blocks.
        num_heads: attention heads.
        patch_size: samples per time patch S.
        mlp_ratio: FFN width as a multiple of D.
        dropout: dropout after the attention projection and in the FFN.
        attn_dropout: SDPA dropout (keep 0 on CPU: a non-zero value is a slow path).
        band_power: add per-patch log band power (1–4, 4–8, 8–13, 13–20, 20–30, 30–45 Hz) to the patch input.
        channel_embedding: ``lookup`` (a learned table per electrode) or ``position`` (from 3-D positions).
        max_time_patches: rows of the time-embedding table (default n_times // patch_size; more: longer windows).
        channel_gain: a learned gain per electrode on the output tokens (``encoders.token_gain``; lookup only).
        channel_gain_std: the gains start at 1 + std·N(0, 1) (0: all ones).
        channel_gain_lr_scale: the gains learn this many times faster than the other weights.
        linear_skip: add a per-(electrode, patch) linear map of the raw patch to each output token, so a mean
            readout can compute what the linear reference does (``encoders.token_skip``; lookup only; not the
            paper's: docs/model.md).
        linear_skip_rate: the skip path reads the patch averaged to this many Hz (the linear reference's 25).
        montage: MNE montage the names are looked up in (``position`` only).
        positions: ``[n_channels, 3]`` electrode positions instead of looking names up (``position`` only).
    """

    def __init__(self, n_channels: int, sfreq: float, n_times: int, ch_names: Sequence[str] | None = None,
                 embed_dim: int = 64, depth: int = 2, num_heads: int = 4, patch_size: int = 125,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, attn_dropout: float = 0.0, band_power: bool = True,
                 channel_embedding: str = "lookup", max_time_patches: int | None = None, channel_gain: bool = False,
                 channel_gain_std: float = 1.0, channel_gain_lr_scale: float = 10.0,
                 linear_skip: bool = False, linear_skip_rate: float = 25.0,
                 montage: str = DEFAULT_MONTAGE, positions: Sequence[Sequence[float]] | None = None):
        super().__init__(n_channels, sfreq, n_times, ch_names)
        if patch_size < 1 or patch_size > n_times:
            raise ValueError(f"patch_size must be in [1, n_times={n_times}], got {patch_size}")
        if channel_embedding not in CHANNEL_EMBEDDINGS:
            raise NotImplementedError(f"channel_embedding {channel_embedding!r}: only {CHANNEL_EMBEDDINGS} so far")
        self.embed_dim = embed_dim
        self.channel_embedding = channel_embedding
        self.patch_size = patch_size
        self.n_patches = n_times // patch_size
        self.max_time_patches = int(max_time_patches or self.n_patches)
        if self.max_time_patches < self.n_patches:
            raise ValueError(f"max_time_patches {self.max_time_patches} < n_times // patch_size = {self.n_patches}")
        self.n_tokens = n_channels * self.n_patches
        self.band_power = BandPower(patch_size, sfreq) if band_power else None
        n_feat = patch_size + (self.band_power.n_bands if band_power else 0)
        self.patch_embed = nn.Linear(n_feat, embed_dim)
        if channel_embedding == "position":
            self.channel_embed = PositionChannelEmbedding(embed_dim)
            self.register_buffer("channel_positions", channel_positions(n_channels, ch_names, positions, montage),
                                 persistent=False)  # data facts, not weights: set_channels may replace them
        else:
            self.channel_embed = LookupChannelEmbedding(n_channels, embed_dim)
        self.time_embed = nn.Parameter(torch.zeros(self.max_time_patches, embed_dim))
        self.transformer = TokenTransformer(embed_dim, depth, num_heads, mlp_ratio, dropout, attn_dropout)
        if channel_gain and channel_embedding != "lookup":
            raise ValueError("channel_gain needs channel_embedding='lookup' (one gain vector per training electrode)")
        self.channel_gain = TokenGain(n_channels, embed_dim, channel_gain_std, channel_gain_lr_scale) if channel_gain else None
        if linear_skip and channel_embedding != "lookup":
            raise ValueError("linear_skip needs channel_embedding='lookup' (one map per training electrode)")
        pool = max(1, min(patch_size, int(round(sfreq / linear_skip_rate))))
        self.linear_skip = (TokenLinearSkip(n_channels, self.max_time_patches, patch_size, embed_dim, pool)
                            if linear_skip else None)
        self.apply(init_weights)
        nn.init.trunc_normal_(self.time_embed, std=0.02)
        if channel_embedding == "position":
            self.channel_embed.reset_parameters()

    def set_channels(self, ch_names: Sequence[str] | None = None, montage: str = DEFAULT_MONTAGE,
                     positions: Sequence[Sequence[float]] | None = None) -> "ChannelOrientedEncoder":
        """Run on other electrodes from now on (``channel_embedding="position"`` only): ``ch_names`` looked up
        in the MNE ``montage`` (e.g. ``"standard_1005"``), or explicit ``positions [C, 3]``. Updates
        ``n_channels``, ``ch_names``, ``n_tokens``; the weights are untouched. Returns ``self``."""
        if self.channel_embedding != "position":
            raise ValueError("set_channels needs channel_embedding='position' (a lookup table only knows the "
                             "training montage; use channel_index for a subset of it)")
        if ch_names is None and positions is None:
            raise ValueError("set_channels needs ch_names or positions")
        n = len(ch_names) if ch_names is not None else len(positions)
        pos = channel_positions(n, ch_names, positions, montage).to(self.channel_positions.device)
        self.channel_positions = pos
        self.n_channels = n
        self.ch_names = list(ch_names) if ch_names is not None else None
        self.n_tokens = n * self.n_patches
        return self

    def channel_vectors(self, ident: Tensor) -> Tensor:
        """``E_chan`` of the input rows: ``ident`` is ``[B, C]`` long (rows of the model's montage) or, for
        ``"position"``, ``[B, C, 3]`` float positions -> ``[B, C, D]``."""
        if ident.is_floating_point():
            return self.channel_embed(ident)
        if self.channel_embedding == "position":
            return F.embedding(ident, self.channel_embed(self.channel_positions))
        return self.channel_embed(ident)

    def patch_features(self, x: Tensor) -> Tensor:
        """``[..., T] -> [..., P, S (+ n_bands)]``: the per-patch inputs of the patch embedding."""
        P = x.shape[-1] // self.patch_size
        patches = x[..., : P * self.patch_size].unflatten(-1, (P, self.patch_size))
        if self.band_power is None:
            return patches
        return torch.cat([patches, self.band_power(patches)], dim=-1)

    def token_channel_share(self, token_weights: Tensor, channel_mask: Tensor | None = None) -> Tensor:
        """Token weights ``[B, C·P]`` (channel-major) -> per-electrode share ``[B, C]``, 0 at absent electrodes,
        summing to 1 over present ones."""
        B, N = token_weights.shape
        C = channel_mask.shape[1] if channel_mask is not None else self.n_channels
        w = token_weights.float().view(B, C, N // C).sum(-1)
        if channel_mask is not None:
            w = w * channel_mask.to(w.dtype)
        return w / w.sum(-1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def rollout_channel_map(self, eeg: Tensor, channel_mask: Tensor | None = None, include_cls: bool = False) -> Tensor:
        """Attention rollout from the mean of the output tokens (plus the CLS with ``include_cls``) to the input
        tokens, summed per electrode: ``eeg [B, C, T]`` (the full montage) -> ``[B, C]`` share over present
        electrodes (:meth:`encoders.token_transformer.TokenTransformer.rollout`)."""
        self.check_input(eeg, channel_mask)
        B, C, T = eeg.shape
        mask = channel_mask.bool() if channel_mask is not None else torch.ones(B, C, dtype=torch.bool, device=eeg.device)
        x = torch.where(mask[..., None], eeg, torch.zeros((), dtype=eeg.dtype, device=eeg.device))
        P = T // self.patch_size
        rows = torch.arange(C, device=eeg.device).expand(B, -1)
        tok = self.patch_embed(self.patch_features(x)) + self.channel_vectors(rows)[:, :, None, :] + self.time_embed[:P]
        w = self.transformer.rollout(tok.flatten(1, 2), mask.repeat_interleave(P, dim=1), include_cls)
        return self.token_channel_share(w, mask)

    def forward(self, eeg: Tensor, channel_mask: Tensor | None = None,
                channel_index: Tensor | None = None, positions: Tensor | None = None) -> EncoderOutput:
        """eeg ``[B, C', T]``, channel_mask ``[B, C']``, channel_index ``[C']``/``[B, C']`` or (``"position"``
        only) positions ``[C', 3]``/``[B, C', 3]`` -> :class:`EncoderOutput`."""
        if eeg.dim() != 3:
            raise ValueError(f"{type(self).__name__} expects eeg [B, C, T], got {tuple(eeg.shape)}")
        B, C, T = eeg.shape
        dev = eeg.device
        if positions is not None:
            if self.channel_embedding != "position":
                raise ValueError("positions= needs channel_embedding='position'")
            if channel_index is not None:
                raise ValueError("pass channel_index or positions, not both")
            positions = torch.as_tensor(positions, dtype=torch.float32, device=dev)
            if positions.dim() == 2:
                positions = positions.expand(B, -1, -1)
            if positions.shape != (B, C, 3):
                raise ValueError(f"positions must be [{C}, 3] or [{B}, {C}, 3], got {tuple(positions.shape)}")
            channel_index = positions  # identifies the rows below (gathered like an index)
        elif channel_index is None:
            if C != self.n_channels:
                raise ValueError(f"{type(self).__name__} expects {self.n_channels} channels, got {C} "
                                 f"(pass channel_index to run on a subset)")
            channel_index = torch.arange(C, device=dev)
        if positions is None:
            channel_index = channel_index.to(device=dev, dtype=torch.long)
        if channel_index.dim() == 1:
            channel_index = channel_index.expand(B, -1)
        if channel_index.shape[:2] != (B, C):
            raise ValueError(f"channel_index must be [{C}] or [{B}, {C}], got {tuple(channel_index.shape)}")
        if channel_mask is not None and channel_mask.shape != (B, C):
            raise ValueError(f"channel_mask must be [B, C] = {(B, C)}, got {tuple(channel_mask.shape)}")
        P = T // self.patch_size
        if P < 1 or P > self.max_time_patches:
            raise ValueError(f"T={T} gives {P} patches of {self.patch_size}; need 1..{self.max_time_patches}")

        mask = channel_mask.bool() if channel_mask is not None else torch.ones(B, C, dtype=torch.bool, device=dev)
        if bool(mask.all()):
            sel, x, rows, present = None, eeg, channel_index, None
        else:  # pack present channels to the front; keep as many rows as the fullest sample needs
            n_keep = max(1, int(mask.sum(1).max()))
            sel = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :n_keep]  # [B, C'']
            present = mask.gather(1, sel)
            x = eeg.gather(1, sel[..., None].expand(-1, -1, T))
            x = torch.where(present[..., None], x, torch.zeros((), dtype=x.dtype, device=dev))  # never read absent values
            rows = channel_index.gather(1, sel if positions is None else sel[..., None].expand(-1, -1, 3))
        Ck = x.shape[1]
        tok = self.patch_embed(self.patch_features(x))  # [B, C'', P, D]
        tok = tok + self.channel_vectors(rows)[:, :, None, :] + self.time_embed[:P]
        tok_present = present.repeat_interleave(P, dim=1) if present is not None else None
        cls, out, attn = self.transformer(tok.flatten(1, 2), tok_present)
        out = out.view(B, Ck, P, -1)
        if self.channel_gain is not None:  # per-electrode gain on each output feature (absent rows stay 0)
            out = self.channel_gain(out, rows)
        attn = attn.view(B, Ck, P).sum(-1)
        if sel is not None:
            out = out.new_zeros(B, C, P, out.shape[-1]).scatter(1, sel[..., None, None].expand_as(out), out)
            attn = attn.new_zeros(B, C).scatter(1, sel, attn)
        if self.linear_skip is not None:  # on the full input grid; absent rows read as 0 and stay 0
            raw = eeg[..., : P * self.patch_size].unflatten(-1, (P, self.patch_size))
            raw = torch.where(mask[..., None, None], raw, torch.zeros((), dtype=raw.dtype, device=dev))
            skip = self.linear_skip(raw, channel_index)
            out = out + torch.where(mask[..., None, None], skip, torch.zeros((), dtype=skip.dtype, device=dev))
        token_time = torch.arange(P, device=dev).repeat(C)
        return EncoderOutput(pooled=cls, tokens=out.flatten(1, 2), token_time=token_time, channel_attention=attn,
                             token_mask=mask.repeat_interleave(P, dim=1))

"""Block-token EEG encoder: tokens from groups of neighbouring electrodes (the paper's tokenisation ablation).

Same transformer as :class:`encoders.channel_oriented.ChannelOrientedEncoder` (its
:class:`~encoders.token_transformer.TokenTransformer`), only the tokens differ: electrodes are partitioned
into ``n_groups`` spatial groups (``encoders.montage.neighbour_groups``: seeded farthest-point init +
k-means on the montage positions, deterministic), and one token per (group, time patch) embeds all of the
group's channels × patch samples (plus each channel's band power) with that group's own linear map.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from encoders.base import EEGEncoder, EncoderOutput
from encoders.montage import DEFAULT_MONTAGE, neighbour_groups, resolve_positions
from encoders.token_transformer import BandPower, TokenTransformer, init_weights


class BlockTokenEncoder(EEGEncoder):
    """One token per (electrode group, time patch), CLS readout, fixed grid of ``n_groups · P`` tokens.

    Token for group ``g``, patch ``p``: ``W_g · concat_{c in g}([x[c, patch p], logbandpower]) + b_g + E_time[p]``
    (``W_g`` per group, so the bias ``b_g`` is the group identity; groups are padded to the largest group
    with zero inputs).

    **Channel mask = zero-fill inside a group.** An absent channel's samples and band-power features are
    replaced by 0 inside its group's token (a block token cannot drop part of itself); a group token is
    removed (key padding, output 0, ``token_mask`` False) only when *all* its channels are absent. So,
    unlike channel-wise tokens, masking is not equivalent to the channel being physically absent.

    Shapes (``G = n_groups``, ``P = T // patch_size``):
    ``eeg [B, C, T]``, ``channel_mask [B, C]`` -> ``pooled [B, D]`` (CLS), ``tokens [B, G·P, D]`` group-major
    (token ``g·P + p``), ``token_time [G·P]``, ``token_mask [B, G·P]``, ``channel_attention [B, C]``: the last
    block's CLS→token attention summed per group (renormalised over present tokens) and shared equally
    among the group's present channels, so it sums to 1 over present channels. ``groups``: the partition,
    a list of ``G`` sorted channel-index lists.

    Defaults (CPU): 16 groups, patch 25 → 16 × 10 = 160 tokens for 2 s at 125 Hz (calibration.md), D 64,
    depth 2, 4 heads.

    Args:
        n_channels, sfreq, n_times, ch_names: the data's facts; ``ch_names`` resolve positions through the
            MNE ``montage`` (default: NMED's ``E1``–``E124`` + ``Cz`` for 125 channels).
        n_groups: electrode groups. group_seed: seed of the partition.
        positions: optional ``[C, 3]`` electrode positions instead of ``ch_names``.
        embed_dim, depth, num_heads, patch_size, mlp_ratio, dropout, attn_dropout, band_power, max_time_patches:
            as in :class:`~encoders.channel_oriented.ChannelOrientedEncoder`.
    """

    def __init__(self, n_channels: int, sfreq: float, n_times: int, ch_names: Sequence[str] | None = None,
                 n_groups: int = 16, embed_dim: int = 64, depth: int = 2, num_heads: int = 4, patch_size: int = 25,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, attn_dropout: float = 0.0, band_power: bool = True,
                 max_time_patches: int | None = None, group_seed: int = 0,
                 positions: Sequence[Sequence[float]] | None = None, montage: str = DEFAULT_MONTAGE):
        super().__init__(n_channels, sfreq, n_times, ch_names)
        if patch_size < 1 or patch_size > n_times:
            raise ValueError(f"patch_size must be in [1, n_times={n_times}], got {patch_size}")
        pos = resolve_positions(n_channels, ch_names, positions, montage)
        self.groups = neighbour_groups(pos, n_groups, seed=group_seed)
        self.n_groups = n_groups
        s_max = max(len(g) for g in self.groups)
        index = torch.full((n_groups, s_max), n_channels, dtype=torch.long)  # pad -> an all-zero extra row
        for g, chans in enumerate(self.groups):
            index[g, : len(chans)] = torch.tensor(chans)
        group_of = torch.empty(n_channels, dtype=torch.long)
        for g, chans in enumerate(self.groups):
            group_of[chans] = g
        self.register_buffer("group_index", index, persistent=False)
        self.register_buffer("group_of", group_of, persistent=False)

        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.n_patches = n_times // patch_size
        self.max_time_patches = int(max_time_patches or self.n_patches)
        if self.max_time_patches < self.n_patches:
            raise ValueError(f"max_time_patches {self.max_time_patches} < n_times // patch_size = {self.n_patches}")
        self.n_tokens = n_groups * self.n_patches
        self.band_power = BandPower(patch_size, sfreq) if band_power else None
        self.n_feat = patch_size + (self.band_power.n_bands if band_power else 0)
        self.group_weight = nn.Parameter(torch.empty(n_groups, s_max * self.n_feat, embed_dim))
        self.group_bias = nn.Parameter(torch.zeros(n_groups, embed_dim))
        self.time_embed = nn.Parameter(torch.zeros(self.max_time_patches, embed_dim))
        self.transformer = TokenTransformer(embed_dim, depth, num_heads, mlp_ratio, dropout, attn_dropout)
        self.apply(init_weights)
        nn.init.trunc_normal_(self.group_weight, std=0.02)
        nn.init.trunc_normal_(self.group_bias, std=0.02)
        nn.init.trunc_normal_(self.time_embed, std=0.02)

    def forward(self, eeg: Tensor, channel_mask: Tensor | None = None) -> EncoderOutput:
        """eeg ``[B, C, T]``, channel_mask ``[B, C]`` (True = present) -> :class:`EncoderOutput`."""
        self.check_input(eeg, channel_mask)
        B, C, T = eeg.shape
        dev = eeg.device
        P = T // self.patch_size
        if P < 1 or P > self.max_time_patches:
            raise ValueError(f"T={T} gives {P} patches of {self.patch_size}; need 1..{self.max_time_patches}")
        mask = channel_mask.bool() if channel_mask is not None else torch.ones(B, C, dtype=torch.bool, device=dev)
        patches = eeg[..., : P * self.patch_size].unflatten(-1, (P, self.patch_size))  # [B, C, P, S]
        feats = patches if self.band_power is None else torch.cat([patches, self.band_power(patches)], -1)
        keep = torch.cat([mask, mask.new_zeros(B, 1)], 1)  # [B, C+1]; row C is the padding slot
        feats = torch.cat([feats, feats.new_zeros(B, 1, P, self.n_feat)], 1)
        feats = torch.where(keep[:, :, None, None], feats, torch.zeros((), dtype=feats.dtype, device=dev))
        g = feats[:, self.group_index]  # [B, G, S_max, P, F]
        g = g.permute(0, 1, 3, 2, 4).flatten(3)  # [B, G, P, S_max·F]
        tok = torch.einsum("bgpf,gfd->bgpd", g, self.group_weight) + self.group_bias[:, None] + self.time_embed[:P]
        group_present = keep[:, self.group_index].any(-1)  # [B, G]
        tok_present = group_present.repeat_interleave(P, dim=1)
        cls, out, attn = self.transformer(tok.flatten(1, 2), tok_present)
        group_attn = attn.view(B, self.n_groups, P).sum(-1)  # [B, G]
        n_present = torch.zeros(B, self.n_groups, device=dev).index_add_(1, self.group_of, mask.float())
        chan_attn = (group_attn / n_present.clamp_min(1.0))[:, self.group_of] * mask.to(group_attn.dtype)
        return EncoderOutput(pooled=cls, tokens=out, token_time=torch.arange(P, device=dev).repeat(self.n_groups),
                             channel_attention=chan_attn, token_mask=tok_present)

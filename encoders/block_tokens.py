"""Block-token EEG encoder: tokens that mix neighbouring electrodes (the paper's tokenisation ablation).

Same transformer as :class:`encoders.channel_oriented.ChannelOrientedEncoder` (its
:class:`~encoders.token_transformer.TokenTransformer`), same patch size and band-power features; only what a
token embeds differs. Two groupings:

- ``"neighbourhood"`` (the ablation's default): one block per electrode — the electrode and its
  ``group_size − 1`` nearest neighbours on the montage — embedded by one shared linear map, plus the centre
  electrode's learned channel vector and the time vector. Same token count (``C · P``), same patch size,
  same channel and time embeddings as the full model: the one change is that a token sees a block of
  electrodes instead of one (``(group_size − 1) · F · D`` more patch-embedding weights).
- ``"partition"``: ``n_groups`` disjoint spatial groups (``chanmusic.core.electrodes.neighbour_groups``: seeded
  farthest-point init + k-means on the positions), one token per (group, patch) with the group's own linear
  map (its bias is the group identity) — the classic block tokens, with ``n_groups · P`` tokens.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from encoders.base import EEGEncoder, EncoderOutput
from chanmusic.core.electrodes import DEFAULT_MONTAGE, distance_matrix, neighbour_groups, resolve_positions
from encoders.token_gain import TokenGain
from encoders.token_transformer import BandPower, TokenTransformer, init_weights

GROUPINGS = ("neighbourhood", "partition")


class BlockTokenEncoder(EEGEncoder):
    """One token per (electrode block, time patch), CLS readout.

    Token for block ``g``, patch ``p``: ``W · concat_{c in g}([x[c, patch p], logbandpower]) + E_g + E_time[p]``
    (``neighbourhood``: ``W`` shared, ``E_g`` the centre electrode's learned vector; ``partition``: ``W_g`` per
    group, ``E_g = b_g``; groups padded to the largest with zero inputs).

    **Channel mask = zero-fill inside a block.** An absent electrode's samples and band power are replaced by 0
    inside every block that contains it (a block token cannot drop part of itself). A token is removed (key
    padding, output 0, ``token_mask`` False) when its centre electrode is absent (``neighbourhood``: so the
    token count under dropout equals the channel-oriented model's) or, for ``partition``, when all its
    electrodes are. Unlike channel-wise tokens, masking is therefore not the same as physical absence.

    Shapes (``G`` blocks: ``C`` for ``neighbourhood``, ``n_groups`` for ``partition``; ``P = T // patch_size``):
    ``eeg [B, C, T]``, ``channel_mask [B, C]`` -> ``pooled [B, D]`` (CLS), ``tokens [B, G·P, D]`` block-major
    (token ``g·P + p``), ``token_time [G·P]``, ``token_mask [B, G·P]``, ``channel_attention [B, C]`` (the last
    block's CLS→token attention per block, given to its centre electrode — ``neighbourhood`` — or shared
    equally among the group's present electrodes — ``partition``; sums to 1 over present electrodes).
    ``groups``: the blocks, a list of ``G`` channel-index lists (``neighbourhood``: centre first, then by
    distance; ``partition``: sorted). ``n_tokens = G · (n_times // patch_size)``.

    Args:
        n_channels, sfreq, n_times, ch_names: the data's facts; ``ch_names`` resolve positions through the
            MNE ``montage`` (default: NMED's ``E1``–``E124`` + ``Cz`` for 125 channels).
        grouping: ``"neighbourhood"`` or ``"partition"``.
        group_size: electrodes per block (``neighbourhood``). n_groups, group_seed: the partition.
        positions: optional ``[C, 3]`` electrode positions instead of ``ch_names``.
        embed_dim, depth, num_heads, patch_size, mlp_ratio, dropout, attn_dropout, band_power, max_time_patches:
            as in :class:`~encoders.channel_oriented.ChannelOrientedEncoder` (same defaults, so the ablation
            changes the tokens only).
        channel_gain, channel_gain_std, channel_gain_lr_scale: a learned output gain per block token
            (:class:`encoders.token_gain.TokenGain`), the counterpart of the channel-oriented model's per electrode.
    """

    def __init__(self, n_channels: int, sfreq: float, n_times: int, ch_names: Sequence[str] | None = None,
                 grouping: str = "neighbourhood", group_size: int = 8, n_groups: int = 16, embed_dim: int = 64,
                 depth: int = 2, num_heads: int = 4, patch_size: int = 125, mlp_ratio: float = 4.0,
                 dropout: float = 0.0, attn_dropout: float = 0.0, band_power: bool = True,
                 max_time_patches: int | None = None, group_seed: int = 0, channel_gain: bool = False,
                 channel_gain_std: float = 1.0, channel_gain_lr_scale: float = 10.0,
                 positions: Sequence[Sequence[float]] | None = None, montage: str = DEFAULT_MONTAGE):
        super().__init__(n_channels, sfreq, n_times, ch_names)
        if patch_size < 1 or patch_size > n_times:
            raise ValueError(f"patch_size must be in [1, n_times={n_times}], got {patch_size}")
        if grouping not in GROUPINGS:
            raise ValueError(f"grouping {grouping!r} is not one of {GROUPINGS}")
        if grouping == "neighbourhood" and not 1 <= group_size <= n_channels:
            raise ValueError(f"group_size must be in [1, n_channels={n_channels}], got {group_size}")
        pos = resolve_positions(n_channels, ch_names, positions, montage)
        self.grouping = grouping
        if grouping == "neighbourhood":
            order = torch.from_numpy(distance_matrix(pos)).argsort(dim=1, stable=True)[:, :group_size]
            self.groups = [[c] + [int(j) for j in order[c] if j != c][: group_size - 1] for c in range(n_channels)]
        else:
            self.groups = neighbour_groups(pos, n_groups, seed=group_seed)
        self.n_groups = len(self.groups)
        s_max = max(len(g) for g in self.groups)
        index = torch.full((self.n_groups, s_max), n_channels, dtype=torch.long)  # pad -> an all-zero extra row
        for g, chans in enumerate(self.groups):
            index[g, : len(chans)] = torch.tensor(chans)
        self.register_buffer("group_index", index, persistent=False)
        group_of = torch.arange(n_channels)
        if grouping == "partition":
            for g, chans in enumerate(self.groups):
                group_of[chans] = g
        self.register_buffer("group_of", group_of, persistent=False)

        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.n_patches = n_times // patch_size
        self.max_time_patches = int(max_time_patches or self.n_patches)
        if self.max_time_patches < self.n_patches:
            raise ValueError(f"max_time_patches {self.max_time_patches} < n_times // patch_size = {self.n_patches}")
        self.n_tokens = self.n_groups * self.n_patches
        self.band_power = BandPower(patch_size, sfreq) if band_power else None
        self.n_feat = patch_size + (self.band_power.n_bands if band_power else 0)
        if grouping == "neighbourhood":
            self.patch_embed = nn.Linear(s_max * self.n_feat, embed_dim)
            self.channel_embed = nn.Embedding(n_channels, embed_dim)
        else:
            self.group_weight = nn.Parameter(torch.empty(self.n_groups, s_max * self.n_feat, embed_dim))
            self.group_bias = nn.Parameter(torch.zeros(self.n_groups, embed_dim))
        self.time_embed = nn.Parameter(torch.zeros(self.max_time_patches, embed_dim))
        self.transformer = TokenTransformer(embed_dim, depth, num_heads, mlp_ratio, dropout, attn_dropout)
        # one gain row per block token, as the channel-oriented model has one per electrode token
        self.channel_gain = (TokenGain(self.n_groups, embed_dim, channel_gain_std, channel_gain_lr_scale)
                             if channel_gain else None)
        self.apply(init_weights)
        if grouping == "partition":
            nn.init.trunc_normal_(self.group_weight, std=0.02)
            nn.init.trunc_normal_(self.group_bias, std=0.02)
        nn.init.trunc_normal_(self.time_embed, std=0.02)

    def _tokens(self, eeg: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``eeg [B, C, T]``, ``mask [B, C]`` -> ``(tokens [B, G, P, D], present [B, G])``."""
        B, C, T = eeg.shape
        P = T // self.patch_size
        if P < 1 or P > self.max_time_patches:
            raise ValueError(f"T={T} gives {P} patches of {self.patch_size}; need 1..{self.max_time_patches}")
        patches = eeg[..., : P * self.patch_size].unflatten(-1, (P, self.patch_size))  # [B, C, P, S]
        feats = patches if self.band_power is None else torch.cat([patches, self.band_power(patches)], -1)
        keep = torch.cat([mask, mask.new_zeros(B, 1)], 1)  # [B, C+1]; row C is the padding slot
        feats = torch.cat([feats, feats.new_zeros(B, 1, P, self.n_feat)], 1)
        feats = torch.where(keep[:, :, None, None], feats, torch.zeros((), dtype=feats.dtype, device=eeg.device))
        g = feats[:, self.group_index].permute(0, 1, 3, 2, 4).flatten(3)  # [B, G, P, S_max·F]
        if self.grouping == "neighbourhood":
            tok = self.patch_embed(g) + self.channel_embed.weight[:, None] + self.time_embed[:P]
            return tok, mask
        tok = torch.einsum("bgpf,gfd->bgpd", g, self.group_weight) + self.group_bias[:, None] + self.time_embed[:P]
        return tok, keep[:, self.group_index].any(-1)

    def token_channel_share(self, token_weights: Tensor, channel_mask: Tensor | None = None) -> Tensor:
        """Token weights ``[B, G·P]`` -> per-electrode share ``[B, C]`` (a block's weight goes to its centre,
        or is shared among a partition group's present electrodes), summing to 1 over present electrodes."""
        B = token_weights.shape[0]
        dev = token_weights.device
        mask = channel_mask.bool() if channel_mask is not None else torch.ones(B, self.n_channels, dtype=torch.bool,
                                                                               device=dev)
        group_w = token_weights.float().view(B, self.n_groups, -1).sum(-1)
        n_present = torch.zeros(B, self.n_groups, device=dev).index_add_(1, self.group_of, mask.float())
        w = (group_w / n_present.clamp_min(1.0))[:, self.group_of] * mask.float()
        return w / w.sum(-1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def rollout_channel_map(self, eeg: Tensor, channel_mask: Tensor | None = None, include_cls: bool = False) -> Tensor:
        """Attention rollout from the mean output token (plus the CLS with ``include_cls``) to the input tokens,
        per electrode ``[B, C]`` (as :meth:`ChannelOrientedEncoder.rollout_channel_map`)."""
        self.check_input(eeg, channel_mask)
        B, C, _ = eeg.shape
        mask = channel_mask.bool() if channel_mask is not None else torch.ones(B, C, dtype=torch.bool, device=eeg.device)
        tok, present = self._tokens(eeg, mask)
        P = tok.shape[2]
        w = self.transformer.rollout(tok.flatten(1, 2), present.repeat_interleave(P, dim=1), include_cls)
        return self.token_channel_share(w, mask)

    def forward(self, eeg: Tensor, channel_mask: Tensor | None = None) -> EncoderOutput:
        """eeg ``[B, C, T]``, channel_mask ``[B, C]`` (True = present) -> :class:`EncoderOutput`."""
        self.check_input(eeg, channel_mask)
        B, C, T = eeg.shape
        dev = eeg.device
        mask = channel_mask.bool() if channel_mask is not None else torch.ones(B, C, dtype=torch.bool, device=dev)
        tok, present = self._tokens(eeg, mask)
        P = tok.shape[2]
        tok_present = present.repeat_interleave(P, dim=1)
        cls, out, attn = self.transformer(tok.flatten(1, 2), tok_present)
        if self.channel_gain is not None:  # removed blocks' outputs are 0 and stay 0
            out = self.channel_gain(out.view(B, self.n_groups, P, -1), torch.arange(self.n_groups, device=dev).expand(B, -1)).flatten(1, 2)
        return EncoderOutput(pooled=cls, tokens=out, token_time=torch.arange(P, device=dev).repeat(self.n_groups),
                             channel_attention=self.token_channel_share(attn, mask), token_mask=tok_present)

"""Heads mapping encoder output to the CLAP space, apart from the training loop.

Every head reads one **readout source** of the :class:`~encoders.base.EncoderOutput` and only its *present*
tokens (``token_mask``): a channel removed by dropout or missing from the cap is never fed to a head as a
zero (the paper's thesis: a masked channel equals a physically absent one, up to the readout).

Readout sources (``readout``):

- ``"pooled"``: the encoder's pooled vector (the CLS for token encoders), one "token".
- ``"tokens"``: the present tokens.
- ``"cls+tokens"``: the pooled vector followed by the present tokens (the authors' ``StatHead`` input:
  CLS + channel-major tokens).

Heads (``head``):

- ``temporal`` (the full model's default): the authors' ``StatHead`` over the *present* tokens — Conv1d
  (k=3) along the packed token sequence (present tokens in their order, as the authors' code gathers the
  kept channels), mean, Linear, GELU, Linear, LayerNorm. Default source ``cls+tokens``.
- ``mlp``: mean of the source, then Linear, GELU, Linear, LayerNorm (the authors' other head). Default
  ``tokens``.
- ``linear``: mean of the source, then one Linear (a mean followed by a linear map = a linear map of the
  tokens, averaged). Default ``pooled``; the linear-head ablations set the full model's source.
- ``attention``: ``n_queries`` learned queries attend over the present tokens of the source (softmax over
  present tokens only), their outputs concatenated, Linear, LayerNorm: a channel-keeping readout (each query
  can pick its own electrodes) that handles removed channels by masking. Default ``tokens``.

:func:`readout_channel_map` says, per electrode, how much the readout actually used draws on it (the scalp
maps): CLS attention for ``pooled``; the head's own attention for ``attention``; attention rollout (Abnar &
Zuidema 2020) from the source's query tokens for the mean-based heads.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from encoders.base import EncoderOutput, masked_mean

HEADS = ("linear", "mlp", "temporal", "attention")  # any encoder
GRID_HEADS = ("weighted",)  # encoders with a fixed token grid (n_tokens) only: WeightedPoolHead, end of file
READOUTS = ("pooled", "tokens", "cls+tokens")
DEFAULT_READOUT = {"linear": "pooled", "mlp": "tokens", "temporal": "cls+tokens", "attention": "tokens",
                   "weighted": "tokens"}


def readout_tokens(out: EncoderOutput, source: str) -> tuple[Tensor, Tensor | None]:
    """The head's input: ``(x [B, N', D], present [B, N'] bool | None)`` for ``source`` (see module doc).
    Absent positions of ``x`` are set to 0 here (``torch.where``, so not even a NaN there can leak); every head
    then leaves them out by ``present``."""
    if source == "pooled":
        return out.pooled.unsqueeze(1), None
    if source not in READOUTS:
        raise ValueError(f"model.readout: {source!r} is not one of {READOUTS}")
    x, present = out.tokens, out.token_mask
    if source == "cls+tokens":
        x = torch.cat([out.pooled.unsqueeze(1), x], 1)
        present = None if present is None else torch.cat([present.new_ones(len(x), 1), present.bool()], 1)
    if present is not None:
        present = present.bool()
        x = torch.where(present[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
    return x, present


def pack_present(x: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
    """Present tokens moved to the front in their order: ``x [B, N, D]``, ``present [B, N]`` ->
    ``(packed [B, M, D], valid [B, M])`` with ``M`` the largest present count; slots past a sample's count
    are 0 and ``valid`` False (they play the role of the sequence end, nothing stands for a channel)."""
    order = torch.argsort((~present).to(torch.int8), dim=1, stable=True)
    m = max(1, int(present.sum(1).max()))
    order = order[:, :m]
    valid = present.gather(1, order)
    packed = x.gather(1, order[..., None].expand(-1, -1, x.shape[-1]))
    return torch.where(valid[..., None], packed, torch.zeros((), dtype=x.dtype, device=x.device)), valid


class LinearHead(nn.Module):
    """Mean of the present source tokens -> one Linear: ``[B, out]`` (``pooled`` source: ``pooled`` -> Linear)."""

    def __init__(self, in_dim: int, out_dim: int, readout: str = "pooled"):
        super().__init__()
        self.readout = readout
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, out: EncoderOutput) -> Tensor:
        x, present = readout_tokens(out, self.readout)
        return self.proj(masked_mean(x, present))


class MLPHead(nn.Module):
    """Mean of the present source tokens -> Linear, GELU, Linear, LayerNorm (the authors' default head)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 512, readout: str = "tokens"):
        super().__init__()
        self.readout = readout
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim), nn.LayerNorm(out_dim))

    def forward(self, out: EncoderOutput) -> Tensor:
        x, present = readout_tokens(out, self.readout)
        return self.net(masked_mean(x, present))


class TemporalHead(nn.Module):
    """The authors' ``StatHead`` over present tokens: Conv1d (k=3, zero padding at the sequence ends) along the
    packed present-token sequence, mean over it, then Linear, GELU, Linear, LayerNorm.

    With channels removed, the output equals the output for the same data with those channels physically
    absent (the conv's neighbours are the neighbouring *present* tokens, as in the authors' code)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 512, readout: str = "cls+tokens"):
        super().__init__()
        self.readout = readout
        self.conv = nn.Conv1d(in_dim, in_dim, 3, padding=1)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim), nn.LayerNorm(out_dim))

    def forward(self, out: EncoderOutput) -> Tensor:
        x, present = readout_tokens(out, self.readout)
        if present is not None and not bool(present.all()):
            x, present = pack_present(x, present)
        else:
            present = None
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return self.mlp(masked_mean(y, present))


class AttentionPoolHead(nn.Module):
    """``n_queries`` learned queries attend over the present source tokens -> concat -> Linear, LayerNorm.

    ``weights(out) -> [B, n_queries, N']``: each query's softmax over the source tokens (0 at absent ones).
    Absent tokens take no part (masked out of the softmax), so removing a channel equals its physical absence.
    """

    def __init__(self, in_dim: int, out_dim: int, n_queries: int = 8, readout: str = "tokens"):
        super().__init__()
        if n_queries < 1:
            raise ValueError(f"model.head_queries: need >= 1 query, got {n_queries}")
        self.readout = readout
        self.norm = nn.LayerNorm(in_dim)
        self.query = nn.Parameter(torch.randn(n_queries, in_dim) * 0.02)
        self.key = nn.Linear(in_dim, in_dim)
        self.out = nn.Sequential(nn.Linear(n_queries * in_dim, out_dim), nn.LayerNorm(out_dim))

    def _attend(self, out: EncoderOutput) -> tuple[Tensor, Tensor]:
        x, present = readout_tokens(out, self.readout)
        v = self.norm(x)
        logits = torch.einsum("qd,bnd->bqn", self.query, self.key(v)) / math.sqrt(v.shape[-1])
        if present is not None:
            logits = logits.masked_fill(~present[:, None, :], float("-inf"))
        return logits.softmax(-1), v

    def weights(self, out: EncoderOutput) -> Tensor:
        return self._attend(out)[0]

    def forward(self, out: EncoderOutput) -> Tensor:
        w, v = self._attend(out)
        return self.out(torch.einsum("bqn,bnd->bqd", w, v).flatten(1))


def build_head(kind: str, in_dim: int, out_dim: int, hidden: int = 512, readout: str | None = None,
               n_queries: int = 8, n_tokens: int | None = None) -> nn.Module:
    """A head by name (``HEADS``) reading ``readout`` (``READOUTS``; ``None`` = the head's default).
    ``n_tokens``: the encoder's fixed token grid (``encoder.n_tokens``), needed by ``weighted`` only."""
    if kind not in HEADS + GRID_HEADS:
        raise ValueError(f"model.head: {kind!r} is not one of {HEADS + GRID_HEADS}")
    readout = readout or DEFAULT_READOUT[kind]
    if readout not in READOUTS:
        raise ValueError(f"model.readout: {readout!r} is not one of {READOUTS}")
    if kind == "linear":
        return LinearHead(in_dim, out_dim, readout)
    if kind == "mlp":
        return MLPHead(in_dim, out_dim, hidden, readout)
    if kind == "temporal":
        return TemporalHead(in_dim, out_dim, hidden, readout)
    if kind == "weighted":
        return weighted_head(in_dim, out_dim, n_tokens, n_queries, readout)
    return AttentionPoolHead(in_dim, out_dim, n_queries, readout)


def readout_channel_map(head: nn.Module, encoder: nn.Module, out: EncoderOutput, eeg: Tensor,
                        channel_mask: Tensor | None) -> tuple[Tensor | None, str]:
    """Per-electrode share ``[B, C]`` (sums to 1 over present electrodes) of the readout ``head`` uses, and
    what it is:

    - ``pooled`` source: the encoder's CLS→channel attention (``"CLS attention"``);
    - ``attention`` head: its queries' own weights, averaged over queries, summed per electrode
      (``"readout attention"``);
    - other sources: attention rollout through every block, queried by the tokens the head averages
      (``"attention rollout"``; encoders with ``rollout_channel_map`` only).

    ``(None, reason)`` when the encoder cannot say (no channel-keeping tokens)."""
    source = getattr(head, "readout", "pooled")
    if isinstance(head, AttentionPoolHead) and hasattr(encoder, "token_channel_share"):
        w = head.weights(out).mean(1)  # [B, N']
        if source == "cls+tokens":
            w = w[:, 1:]
        return encoder.token_channel_share(w, channel_mask), "readout attention"
    if source == "pooled":
        return out.channel_attention, "CLS attention"
    if hasattr(encoder, "rollout_channel_map"):
        return encoder.rollout_channel_map(eeg, channel_mask, include_cls=source == "cls+tokens"), "attention rollout"
    return None, "this encoder has no channel-keeping tokens"


# ---- weighted: signed per-position pooling over the present tokens (appended; see WeightedPoolHead) ---------------
class WeightedPoolHead(nn.Module):
    """``n_maps`` learned **signed** pooling maps over the token grid's positions, present tokens only -> concat ->
    Linear, LayerNorm.

    ``y_k = Σ_{n present} a_kn · LN(x_n) / sqrt(|present|)`` with ``a [n_maps, N]`` one weight per token position
    (channel x patch for channel-token encoders, patch for EEGPT), drawn N(0, 1): a fixed-grid readout like the
    official flattened heads (CBraMod ``all_patch_reps``, EEGPT's per-patch probe), but with a scalar per position
    instead of a matrix, so it stays small at the official sizes. Why signed weights and not a mean (``mlp``) or
    a softmax (``attention``, near-uniform at initialisation): at random initialisation every token carries the same
    input-independent part (embeddings, biases; measured cos 0.98 between positions for EEGPT and CBraMod), which a
    mean adds up coherently while it averages away the window-dependent part — and with it a response whose sign
    differs across electrodes (docs/encoders.md, "Why EEGPT and CBraMod collapsed"). Random signs cancel the
    shared part instead and keep each position's own content.

    Absent tokens (``token_mask`` False) are left out of the sum and of the count, so removing a channel equals
    recording without it (the sum over the present positions, scaled by ``1/sqrt(|present|)``).
    ``readout="cls+tokens"`` prepends the pooled vector as position 0; ``"pooled"`` is one position.
    """

    def __init__(self, in_dim: int, out_dim: int, n_tokens: int, n_maps: int = 8, readout: str = "tokens"):
        super().__init__()
        if n_maps < 1:
            raise ValueError(f"model.head_queries: need >= 1 pooling map, got {n_maps}")
        self.readout = readout
        self.n_positions = 1 if readout == "pooled" else int(n_tokens) + int(readout == "cls+tokens")
        self.norm = nn.LayerNorm(in_dim)
        self.weight = nn.Parameter(torch.randn(n_maps, self.n_positions))
        self.out = nn.Sequential(nn.Linear(n_maps * in_dim, out_dim), nn.LayerNorm(out_dim))

    def forward(self, out: EncoderOutput) -> Tensor:
        x, present = readout_tokens(out, self.readout)
        if x.shape[1] != self.n_positions:
            raise ValueError(f"weighted head was built for {self.n_positions} token positions, got {x.shape[1]}")
        v = self.norm(x)
        if present is None:
            w = self.weight.unsqueeze(0).expand(len(x), -1, -1)
            count = torch.full((len(x), 1, 1), float(x.shape[1]), dtype=v.dtype, device=v.device)
        else:  # absent positions get weight 0 and do not count (their values are never read: torch.where)
            w = torch.where(present[:, None, :], self.weight[None], torch.zeros((), dtype=v.dtype, device=v.device))
            count = present.sum(1).clamp_min(1).to(v.dtype)[:, None, None]
            v = torch.where(present[..., None], v, torch.zeros((), dtype=v.dtype, device=v.device))
        y = torch.einsum("bkn,bnd->bkd", w, v) / count.sqrt()
        return self.out(y.flatten(1))


def weighted_head(in_dim: int, out_dim: int, n_tokens: int | None, n_maps: int, readout: str) -> WeightedPoolHead:
    if readout != "pooled" and not n_tokens:
        raise ValueError("model.head: weighted needs an encoder with a fixed token grid (n_tokens) — use head: "
                         "attention or mlp for this encoder")
    return WeightedPoolHead(in_dim, out_dim, n_tokens or 1, n_maps, readout)

"""Building blocks of the token encoders (``encoders.channel_oriented``, ``encoders.block_tokens``).

- :class:`BandPower`: log band power of each time patch (the induced-response features of a token);
- :class:`Attention`, :class:`TransformerBlock`: pre-norm self-attention with a key-padding mask and the CLS's
  attention weights;
- :class:`TokenTransformer`: CLS token + blocks + final norm over a token sequence with a presence mask;
- :func:`init_weights`: the initialisation both encoders apply.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# canonical EEG bands (Hz): delta, theta, alpha, low beta, high beta, gamma — the induced responses
BANDS: tuple[tuple[float, float], ...] = ((1.0, 4.0), (4.0, 8.0), (8.0, 13.0), (13.0, 20.0), (20.0, 30.0), (30.0, 45.0))


def init_weights(m: nn.Module) -> None:
    """Truncated-normal (std 0.02) Linear / Embedding weights, zero biases, unit LayerNorms (``Module.apply``)."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Embedding):
        nn.init.trunc_normal_(m.weight, std=0.02)


class BandPower(nn.Module):
    """Log band power of each patch: ``[..., S] -> [..., n_bands]``.

    Hann-windowed periodogram of the patch (power normalised by the window energy, so white noise of
    variance 1 gives ≈ 1 per bin), averaged over the bins of each band, ``log(· + eps)``. A band with no
    bin at this resolution (short patches) takes the bin nearest its centre; bands starting at or above
    Nyquist are dropped (``n_bands`` says how many remain).
    """

    def __init__(self, patch_size: int, sfreq: float, bands: Sequence[Sequence[float]] = BANDS, eps: float = 1e-6):
        super().__init__()
        freqs = torch.fft.rfftfreq(patch_size, d=1.0 / sfreq)
        rows = []
        for lo, hi in bands:
            if lo >= sfreq / 2:
                continue
            sel = (freqs >= lo) & (freqs < hi)
            if not bool(sel.any()):
                sel = torch.zeros_like(freqs, dtype=torch.bool)
                sel[int(torch.argmin((freqs - (lo + hi) / 2).abs()))] = True
            rows.append(sel.float() / sel.sum())
        self.n_bands = len(rows)
        self.eps = eps
        window = torch.hann_window(patch_size, periodic=False, dtype=torch.float32)
        self.register_buffer("window", window / window.pow(2).sum().sqrt(), persistent=False)
        self.register_buffer("weights", torch.stack(rows) if rows else torch.zeros(0, len(freqs)), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        spec = torch.fft.rfft(x.float() * self.window, dim=-1)
        power = spec.real.square() + spec.imag.square()
        return torch.log(power @ self.weights.T + self.eps).to(x.dtype)


class Attention(nn.Module):
    """Multi-head self-attention with ``F.scaled_dot_product_attention`` and a key-padding mask.

    ``forward(x [B, N, D], key_mask [B, N] bool | None, cls_weights)``: ``key_mask`` True = the token
    takes part as a key (a query row always keeps token 0, the CLS, so no row is empty). With
    ``cls_weights`` the head-averaged softmax attention of token 0 over all ``N`` tokens ``[B, N]`` is
    returned too (computed explicitly for that one query; SDPA returns no weights).
    """

    def __init__(self, dim: int, num_heads: int, attn_dropout: float = 0.0, proj_dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_dropout = attn_dropout
        self.proj_drop = nn.Dropout(proj_dropout)

    def forward(self, x: Tensor, key_mask: Tensor | None = None, cls_weights: bool = False):
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attn_mask = key_mask[:, None, None, :] if key_mask is not None else None
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.attn_dropout if self.training else 0.0)
        y = self.proj_drop(self.proj(y.transpose(1, 2).reshape(B, N, D)))
        w = None
        if cls_weights:
            logits = (q[:, :, :1] @ k.transpose(-1, -2)).squeeze(2) / math.sqrt(self.head_dim)  # [B, H, N]
            if key_mask is not None:
                logits = logits.masked_fill(~key_mask[:, None, :], float("-inf"))
            w = logits.float().softmax(-1).mean(1)  # [B, N]
        return y, w

    def weights(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """Head-averaged softmax attention of every query over every key: ``[B, N, N]`` (explicit; for maps)."""
        B, N, D = x.shape
        q, k, _ = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        logits = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)  # [B, H, N, N]
        if key_mask is not None:
            logits = logits.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        return logits.float().softmax(-1).mean(1)


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + Attn(LN(x))``, then ``x + FFN(LN(x))`` with a GELU FFN of width ``mlp_ratio·D``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0, attn_dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, attn_dropout, dropout)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim),
                                 nn.Dropout(dropout))

    def forward(self, x: Tensor, key_mask: Tensor | None = None, cls_weights: bool = False):
        y, w = self.attn(self.norm1(x), key_mask, cls_weights)
        x = x + y
        x = x + self.mlp(self.norm2(x))
        return x, w


class TokenTransformer(nn.Module):
    """CLS token + pre-norm transformer blocks + final LayerNorm over a token sequence with a presence mask.

    ``forward(tokens [B, N, D], present [B, N] bool | None)`` returns ``(cls [B, D], out [B, N, D],
    cls_attention [B, N])``. Absent tokens never serve as keys, so present tokens (and the CLS) never see
    them; their own outputs are set to exactly 0. ``cls_attention`` is the last block's head-averaged
    CLS→token attention with the CLS→CLS share removed and the rest renormalised to sum to 1 over present
    tokens (0 at absent tokens; all 0 if no token is present).
    """

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 attn_dropout: float = 0.0):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(TransformerBlock(dim, num_heads, mlp_ratio, dropout, attn_dropout)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, tokens: Tensor, present: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        B, N, _ = tokens.shape
        x = torch.cat([self.cls_token.expand(B, -1, -1).to(tokens.dtype), tokens], dim=1)
        key_mask = None
        if present is not None and not bool(present.all()):
            key_mask = torch.cat([present.new_ones(B, 1), present], dim=1)
        w = None
        for i, blk in enumerate(self.blocks):
            x, w = blk(x, key_mask, cls_weights=i == len(self.blocks) - 1)
        x = self.norm(x)
        cls, out = x[:, 0], x[:, 1:]
        attn = w[:, 1:]
        if present is not None:
            out = torch.where(present[..., None], out, torch.zeros((), dtype=out.dtype, device=out.device))
            attn = attn * present.to(attn.dtype)
        attn = attn / attn.sum(-1, keepdim=True).clamp_min(1e-12)
        return cls, out, attn

    @torch.no_grad()
    def rollout(self, tokens: Tensor, present: Tensor | None = None, include_cls: bool = False) -> Tensor:
        """Attention rollout (Abnar & Zuidema 2020): how much each input token flows into the mean of the
        output tokens a mean-based readout averages (the present tokens, plus the CLS with ``include_cls``).

        Per block ``A = ½·(head-averaged attention) + ½·I`` (the residual), ``R = A_L ⋯ A_1``; the result is
        the query tokens' mean row of ``R`` over the input tokens ``[B, N]`` (the CLS's own input share left
        out), 0 at absent tokens, renormalised to sum 1."""
        B, N, _ = tokens.shape
        x = torch.cat([self.cls_token.expand(B, -1, -1).to(tokens.dtype), tokens], dim=1)
        keep = torch.ones(B, N + 1, dtype=torch.bool, device=tokens.device)
        if present is not None:
            keep[:, 1:] = present
        key_mask = None if bool(keep.all()) else keep
        eye = torch.eye(N + 1, device=tokens.device)
        R = eye.expand(B, -1, -1)
        for blk in self.blocks:
            A = 0.5 * blk.attn.weights(blk.norm1(x), key_mask) + 0.5 * eye
            R = (A / A.sum(-1, keepdim=True)) @ R
            x, _ = blk(x, key_mask)
        q = keep.float()
        if not include_cls:
            q[:, 0] = 0.0
        q = q / q.sum(-1, keepdim=True).clamp_min(1.0)
        w = (q[:, None, :] @ R).squeeze(1)[:, 1:] * keep[:, 1:].float()
        return w / w.sum(-1, keepdim=True).clamp_min(1e-12)

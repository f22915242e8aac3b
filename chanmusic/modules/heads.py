"""Heads mapping encoder output to the CLAP space, apart from the training loop."""
from __future__ import annotations

from torch import Tensor, nn

from encoders.base import EncoderOutput, masked_mean

HEADS = ("linear", "mlp", "temporal", "tokens")


class LinearHead(nn.Module):
    """``pooled [B, D] -> [B, out]`` by one linear layer."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 0, n_tokens: int = 0):
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, out: EncoderOutput) -> Tensor:
        return self.proj(out.pooled)


class MLPHead(nn.Module):
    """Mean of present tokens -> Linear, GELU, Linear, LayerNorm (the authors' default head)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 512, n_tokens: int = 0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim), nn.LayerNorm(out_dim))

    def forward(self, out: EncoderOutput) -> Tensor:
        return self.net(masked_mean(out.tokens, out.token_mask))


class TemporalHead(nn.Module):
    """Conv1d (k=3) over the token sequence, mean over present tokens, then the MLP (the authors' StatHead)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 512, n_tokens: int = 0):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, in_dim, 3, padding=1)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim), nn.LayerNorm(out_dim))

    def forward(self, out: EncoderOutput) -> Tensor:
        x = out.tokens
        if out.token_mask is not None:
            x = x * out.token_mask.unsqueeze(-1).to(x.dtype)
        x = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return self.mlp(masked_mean(x, out.token_mask))


class TokenReadoutHead(nn.Module):
    """Keeps token identity: each token -> ``k`` numbers (absent tokens -> 0), concatenated, then linear.

    Needs a fixed token grid (``n_tokens``), which channel-wise encoders provide with ``token_mask``
    marking removed channels. ``calibration.md``: a readout that keeps channel identity learned where
    a CLS/mean readout stayed at chance in a CPU budget.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 8, n_tokens: int = 0):
        super().__init__()
        if n_tokens <= 0:
            raise ValueError("head 'tokens' needs the encoder's fixed token count (n_tokens)")
        self.per_token = nn.Linear(in_dim, hidden)
        self.out = nn.Sequential(nn.LayerNorm(n_tokens * hidden), nn.Linear(n_tokens * hidden, out_dim))

    def forward(self, out: EncoderOutput) -> Tensor:
        x = self.per_token(out.tokens)
        if out.token_mask is not None:
            x = x * out.token_mask.unsqueeze(-1).to(x.dtype)
        return self.out(x.flatten(1))


def build_head(kind: str, in_dim: int, out_dim: int, hidden: int, n_tokens: int = 0) -> nn.Module:
    classes = {"linear": LinearHead, "mlp": MLPHead, "temporal": TemporalHead, "tokens": TokenReadoutHead}
    if kind not in classes:
        raise ValueError(f"model.head: {kind!r} is not one of {HEADS}")
    return classes[kind](in_dim, out_dim, hidden, n_tokens)

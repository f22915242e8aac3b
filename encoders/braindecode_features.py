"""Per-model code that the braindecode table (``encoders.braindecode_table.MODELS``) points to.

- token extraction, one function per model, ``(encoder, x, present) -> (tokens [B, N, D], cls [B, D] | None)``
  with ``x [B, C, T]`` the model input and ``present [B, C]`` (True = channel present) or ``None``:
  :func:`reve_tokens`, :func:`eegdino_tokens`, :func:`pbt_tokens` (forward hook), :func:`luna_tokens`;
- LUNA with absent channels *removed* (:func:`luna_features` and its masked pieces);
- REVE: construction without the hub download (:func:`reve_without_position_bank`) and electrode positions in
  its frame (:func:`reve_positions`).

Each function cites the braindecode 1.8.1 code (``site-packages/braindecode/models/``) it follows.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from encoders.channel_mapping import electrode_unit_positions
from chanmusic.core.electrodes import montage_ch_names

if TYPE_CHECKING:
    from encoders.braindecode_model import BraindecodeEncoder


# ---- token extraction, one per model -----------------------------------------------------------------------
def reve_tokens(enc: BraindecodeEncoder, x: Tensor, present: Tensor | None) -> tuple[Tensor, Tensor | None]:
    # reve.py REVE.forward(eeg, pos, return_features=True) -> {"features": [B, C, P, D]} before final_layer
    pos = enc.positions.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
    return enc.model(x, pos=pos, return_features=True)["features"].flatten(1, 2), None


def eegdino_tokens(enc: BraindecodeEncoder, x: Tensor, present: Tensor | None) -> tuple[Tensor, Tensor | None]:
    # eegdino.py EEGDINO.forward(x, return_features=True) -> {"features": [B, C·P, D] channel-major,
    # "cls_token": mean of the global tokens}
    out = enc.model(x, return_features=True)
    return out["features"], out["cls_token"]


def pbt_tokens(enc: BraindecodeEncoder, x: Tensor, present: Tensor | None) -> tuple[Tensor, Tensor | None]:
    # patchedtransformer.py PBT.forward returns final_layer(transformer_out[:, 0]) only; a forward hook on
    # PBT.transformer_encoder (the last stage) captures the whole sequence [B, 1 + C·P, D] (CLS first).
    captured: list[Tensor] = []
    handle = enc.model.transformer_encoder.register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        enc.model(x)
    finally:
        handle.remove()
    out = captured[-1]
    return out[:, 1:], out[:, 0]


def luna_cross_attention(block: nn.Module, x: Tensor, key_padding_mask: Tensor | None) -> Tensor:
    """``luna.py _CrossAttentionBlock.forward`` with a key-padding mask (True = channel absent) on the queries'
    attention over channels; with ``key_padding_mask=None`` it is that forward, term for term."""
    queries = block.queries_norm(block.query_embed.repeat(x.shape[0], 1, 1))
    out, _ = block.cross_attention(query=queries, key=block.keys_norm(x), value=block.values_norm(x),
                                   key_padding_mask=key_padding_mask)
    out = block.ffn(out) + out
    return block.query_self_attn(out)


def masked_group_norm(gn: nn.GroupNorm, x: Tensor, rows: Tensor) -> Tensor:
    """``gn(x)`` for ``x [B, E, R, W]`` with statistics over the rows ``rows [B, R]`` (True) only."""
    B, E, R, W = x.shape
    g = gn.num_groups
    xg = x.reshape(B, g, E // g, R, W)
    w = rows[:, None, None, :, None].to(x.dtype)
    n = rows.sum(1).to(x.dtype).clamp_min(1.0)[:, None, None, None, None] * (E // g) * W
    mean = (xg * w).sum((2, 3, 4), keepdim=True) / n
    var = ((xg - mean) * w).pow(2).sum((2, 3, 4), keepdim=True) / n
    y = ((xg - mean) / torch.sqrt(var + gn.eps)).reshape(B, E, R, W)
    if gn.affine:
        y = y * gn.weight[None, :, None, None] + gn.bias[None, :, None, None]
    return y


def luna_patch_embed(pe: nn.Module, x: Tensor, rows: Tensor) -> Tensor:
    """``luna.py _PatchEmbedNetwork.forward`` with its GroupNorm statistics over present (channel, patch) rows.

    The convolutions run along time inside each row, but each GroupNorm pools its statistics over all
    channels x patches of a sample, so without this an absent (zero-filled) channel would still shift every
    other channel's embedding."""
    B, C, T = x.shape
    h = x.reshape(B, C * (T // pe.patch_size), pe.patch_size).unsqueeze(1)  # "B C (S P) -> B (C S) P"
    for layer in pe.proj_in:
        h = masked_group_norm(layer, h, rows) if isinstance(layer, nn.GroupNorm) else layer(h)
    return h.permute(0, 2, 3, 1).flatten(2)  # "B E CS D -> B CS (D E)"


def luna_features(model: nn.Module, x: Tensor, locations: Tensor, present: Tensor | None) -> Tensor:
    """LUNA encoder tokens ``[B, P, Q·D]`` (after the final norm), from the channels ``present [B, C]`` only.

    ``present=None``: the sub-modules of ``luna.py LUNA.forward`` in its order (``prepare_tokens`` ->
    ``cross_attn`` -> ``blocks`` -> ``norm``), without the head. With a mask, ``prepare_tokens`` is redone so
    that absent channels are *removed*: (1) the patch embedding's GroupNorm statistics
    (:func:`luna_patch_embed`) and (2) the min-max normalisation of the electrode locations span present channels
    only, and (3) absent channels are left out of the channel cross-attention by a key-padding mask. The result
    equals running LUNA on the present channels alone. A sample with no present channel attends to all.
    """
    from braindecode.models.luna import nerf_positional_encoding

    B, C, T = x.shape
    P = T // model.patch_size
    locs = locations.to(x.dtype).unsqueeze(0).expand(B, -1, -1)
    if present is None:
        tokens, _ = model.prepare_tokens(x, locs)
        q = model.cross_attn(tokens)[0]
    else:
        present = present & present.any(1, keepdim=True) | ~present.any(1, keepdim=True)  # none present: all
        emb = luna_patch_embed(model.patch_embed, x, present.repeat_interleave(P, 1)) + model.freq_embed(x)
        keep = present.unsqueeze(-1)
        lo = locs.masked_fill(~keep, float("inf")).min(1, keepdim=True)[0]
        hi = locs.masked_fill(~keep, float("-inf")).max(1, keepdim=True)[0]
        locs = (locs - lo) / (hi - lo + 1e-8)
        loc_emb = model.channel_location_embedder(nerf_positional_encoding(locs, model.patch_embed_size))
        tokens = emb.reshape(B, C, P, -1).transpose(1, 2).reshape(B * P, C, -1)  # "B (C t) D -> (B t) C D"
        tokens = tokens + loc_emb.repeat_interleave(P, dim=0)
        q = luna_cross_attention(model.cross_attn, tokens, (~present).repeat_interleave(P, dim=0))
    q = q.reshape(B, P, -1)  # "(B t) Q D -> B t (Q D)"
    for blk in model.blocks:
        q = blk(q)
    return model.norm(q)


def luna_tokens(enc: BraindecodeEncoder, x: Tensor, present: Tensor | None) -> tuple[Tensor, Tensor | None]:
    return luna_features(enc.model, x, enc.positions, present), None


@contextmanager
def reve_without_position_bank() -> Iterator[None]:
    """REVE.__init__ builds ``RevePositionBank``, which downloads a JSON from the Hugging Face hub (reve.py
    RevePositionBank.__init__); offline that fails. The adapter passes positions to ``forward`` itself, so the
    bank is replaced by an empty module during construction (its buffer is non-persistent: no state-dict key)."""
    from braindecode.models import reve

    class _NoBank(nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()

    orig = reve.RevePositionBank
    reve.RevePositionBank = _NoBank
    try:
        yield
    finally:
        reve.RevePositionBank = orig


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares ``dst ≈ s · R @ src + t`` (rotation R, scale s; Umeyama 1991). Returns (s, R, t)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.eye(3)
    d[2, 2] = np.sign(np.linalg.det(u @ vt))
    rot = u @ d @ vt
    scale = float(np.trace(np.diag(sig) @ d) / (a ** 2).sum(1).mean())
    return scale, rot, mu_d - scale * rot @ mu_s


def reve_positions(ch_names: Sequence[str], montage: str, positions_file: str | None) -> np.ndarray:
    """Electrode xyz for REVE's 4-D positional encoding.

    Without ``positions_file``: unit-sphere positions in the fiducial head frame (x right, y front, z up;
    ``encoders.channel_mapping.electrode_unit_positions``) — fine for a model trained here, *not* the pretraining
    frame. With ``positions_file`` (REVE's position bank, a JSON ``{name: [x, y, z]}``, e.g. braindecode's
    ``reve_positions.json``): the similarity transform (scale, rotation, shift) that best maps the unit-sphere
    positions of the bank's 10-05 names onto the bank's coordinates is applied to our electrodes, so every EGI
    electrode keeps its own position in REVE's frame.
    """
    u = electrode_unit_positions(ch_names, montage)
    if positions_file is None:
        return u.astype(np.float32)
    with open(positions_file) as f:
        bank = {str(k).upper(): np.asarray(v, dtype=np.float64) for k, v in json.load(f).items()}
    known = {n.upper() for n in montage_ch_names("standard_1005")}
    names = sorted(n for n in bank if n in known and bank[n].shape == (3,))
    if len(names) < 4:
        raise ValueError(f"{positions_file}: fewer than 4 standard 10-05 names to register the montage on")
    s, rot, t = similarity_fit(electrode_unit_positions(names, "standard_1005"), np.stack([bank[n] for n in names]))
    return (s * u @ rot.T + t).astype(np.float32)


"""Any braindecode EEG foundation model in the table below as an ``EEGEncoder``, chosen by one YAML line.

``BraindecodeEncoder(model="REVE", model_kwargs={...})`` builds the braindecode class for our channels, rate and
window, removes its classification head, and returns pooled + token features through ``EncoderOutput``. The input
path is the shared one of the other pretrained-model adapters (``encoders._foundation.FoundationAdapter``): pick
channels, zero-fill absent ones, resample to the model's rate, pad/crop to whole patches, scale units.

Everything model-specific lives in :data:`MODELS`, one :class:`ModelSpec` per model, each fact with its source
(a file and function of braindecode 1.8.1 in ``site-packages/braindecode/models/``, the official repository, or the
paper). A model that is not in the table fails with a message listing the ones that are. LaBraM, EEGPT and CBraMod
have their own adapters (``encoders.labram`` / ``eegpt`` / ``cbramod``) because their official checkpoints need key
maps. ``python -m encoders.braindecode_model`` prints the table (the source of ``docs/encoders.md``).

Adding a model: one ``ModelSpec`` (rate, patch, units, head, how to get tokens, channel handling, sources) and, if
``forward`` cannot return tokens, a ``features`` function calling its sub-modules or a forward hook; then a tiny
entry in ``tests/test_braindecode_model.py::TINY`` and a YAML in ``experiments/encoders/``.
"""
from __future__ import annotations

import importlib
import inspect
import json
import math
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from encoders._foundation import FoundationAdapter, channel_major, load_mapped, load_official, named_channels

BD = "braindecode 1.8.1 braindecode/models/"
PBT_REPO = "PatchedBrainTransformer main_preTraining.py (the authors' code, timonkl/PatchedBrainTransformer, as " \
           "mirrored in braindecoding/PatchedBrainTransformer) "
# keyword arguments the adapter sets itself (from the data and the table), never through model_kwargs
SIGNAL_KWARGS = ("n_outputs", "n_chans", "n_times", "sfreq", "chs_info", "input_window_seconds")


@dataclass(frozen=True)
class ModelSpec:
    """What the adapter must know about one braindecode model (see :data:`MODELS`).

    cls: braindecode class name (``braindecode.models.<cls>``). aliases: other accepted names.
    sfreq: the rate the model was pretrained at (Hz); inputs are resampled to it.
    patch_kwarg / step_kwarg: constructor argument giving the patch length in samples / the overlap
        (``None``: non-overlapping); their defaults are read from the class signature.
    units: ``"uV"`` (input = µV x ``uv_factor``), ``"zscore"`` (per-channel z-scored data: our z-scored data pass
        through, physical units are z-scored per window), ``"window_zscore"`` (always z-scored per window).
    clip: clamp the model input to ``±clip`` (``None``: no clipping).
    head_kwargs: constructor arguments that make the head cheap or absent; head_attr: the head module, replaced
        by ``nn.Identity`` after construction (``None``: the kwargs alone remove it).
    features: ``(encoder, x, present) -> (tokens [B, N, D], cls [B, D] | None)``, x = model input.
    layout: ``"channel_major"`` (token ``c·P + p`` per channel c, patch p) or ``"patch"`` (one token per patch,
        channels merged inside the model).
    mask: ``"zero-fill"`` (absent channels are zeros; their tokens exist but are marked absent in ``token_mask``)
        or ``"remove"`` (absent channels are excluded from the attention that merges channels).
    channels: how the model knows channels: ``"positions"`` (xyz passed to forward), ``"chs_info"`` (xyz read by
        braindecode from ``chs_info['loc']``), ``"index"`` (learned embedding per input index / token index).
    pass_chs_info: give the model ``chs_info`` (names + MNE positions) at construction.
    vocab / channel_set: default electrode choice (``encoders._foundation.named_channels``).
    max_channels: ``(kwarg, default)`` bounding the number of channels (``None``: any number).
    embed_dim: token width of the built model.
    has_cls: the model has a summary token usable as ``pooling="cls"``.
    unused_params: parameters the encoder path never uses (kept for strict loading, frozen so that no optimiser
        or DDP sees an unused trainable parameter).
    build_context: a context manager around the construction (e.g. to keep it offline).
    drop_keys: checkpoint key prefixes that are not part of the encoder (pretraining decoders, heads) and are
        dropped by name when the encoder has no such key; everything else must match exactly.
    official: the released / paper sizes (the class defaults unless said).
    sources: fact -> where it comes from.
    """

    cls: str
    sfreq: float
    patch_kwarg: str
    units: str
    features: Callable
    layout: str
    mask: str
    channels: str
    embed_dim: Callable[[nn.Module], int]
    official: str
    sources: dict[str, str]
    aliases: tuple[str, ...] = ()
    step_kwarg: str | None = None
    uv_factor: float | None = None
    clip: float | None = None
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    head_attr: str | None = "final_layer"
    pass_chs_info: bool = True
    vocab: str = "tueg19"
    channel_set: str = "all"
    max_channels: tuple[str, int] | None = None
    has_cls: bool = False
    drop_keys: tuple[str, ...] = ("final_layer.",)
    unused_params: tuple[str, ...] = ()
    build_context: Callable[[], Any] | None = None

    @property
    def model_class(self) -> type:
        return getattr(importlib.import_module("braindecode.models"), self.cls)

    def default(self, kwarg: str) -> Any:
        return inspect.signature(self.model_class).parameters[kwarg].default


# ---- token extraction, one per model -----------------------------------------------------------------------
def _reve_features(enc: "BraindecodeEncoder", x: Tensor, present: Tensor | None):
    # reve.py REVE.forward(eeg, pos, return_features=True) -> {"features": [B, C, P, D]} before final_layer
    pos = enc.positions.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
    return enc.model(x, pos=pos, return_features=True)["features"].flatten(1, 2), None


def _eegdino_features(enc: "BraindecodeEncoder", x: Tensor, present: Tensor | None):
    # eegdino.py EEGDINO.forward(x, return_features=True) -> {"features": [B, C·P, D] channel-major,
    # "cls_token": mean of the global tokens}
    out = enc.model(x, return_features=True)
    return out["features"], out["cls_token"]


def _pbt_features(enc: "BraindecodeEncoder", x: Tensor, present: Tensor | None):
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


def _luna_features(enc: "BraindecodeEncoder", x: Tensor, present: Tensor | None):
    return luna_features(enc.model, x, enc.positions, present), None


@contextmanager
def _reve_without_position_bank():
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


MODELS: dict[str, ModelSpec] = {s.cls: s for s in (
    ModelSpec(
        cls="REVE", aliases=("reve",), sfreq=200.0, patch_kwarg="patch_size", step_kwarg="patch_overlap",
        units="zscore", clip=15.0, features=_reve_features, layout="channel_major", mask="zero-fill",
        channels="positions", pass_chs_info=False, head_kwargs={"n_outputs": 1},
        embed_dim=lambda m: m.embed_dim, drop_keys=("final_layer.", "cls_query_token"),
        build_context=_reve_without_position_bank,
        official="REVE-Base: embed_dim 512, depth 22, heads 8, head_dim 64 (class defaults, ~72 M); "
                 "REVE-Large: embed_dim 1250",
        sources={
            "rate": BD + "reve.py REVE docstring warning ('must be sampled at 200 Hz to match pretraining')",
            "units": BD + "reve.py REVE docstring warning (z-score, then clipping at 15 standard deviations; "
                     "per recording or per window is not stated)",
            "patch": BD + "reve.py REVE.__init__ (patch_size=200, patch_overlap=20) and REVE.forward (unfold)",
            "tokens": BD + "reve.py REVE.forward(return_features=True) -> features [B, C, P, D]",
            "head": BD + "reve.py REVE._build_head (needs n_outputs; final_layer replaced by Identity)",
            "channels": BD + "reve.py REVE.forward(pos=[B, C, 3]); RevePositionBank (name -> xyz, downloaded)",
            "weights": BD + "reve.py REVE docstring (brain-bzh/reve-base on the Hugging Face hub, gated)",
        }),
    ModelSpec(
        cls="LUNA", aliases=("luna",), sfreq=256.0, patch_kwarg="patch_size", units="window_zscore",
        features=_luna_features, layout="patch", mask="remove", channels="chs_info", head_kwargs={"n_outputs": 1},
        embed_dim=lambda m: m.embed_dim * m.num_queries,
        drop_keys=("final_layer.", "decoder_head.", "channel_emb."), unused_params=("mask_token",),
        official="LUNA-Base: embed_dim 64, num_queries 4, depth 8 (class defaults, 7 M); Large 96/6/10; "
                 "Huge 128/8/24",
        sources={
            "rate": "pulp-bio/BioFoundation docs/model/LUNA.md 'Default Input Assumptions' (256 Hz, 5-s segments)",
            "units": "pulp-bio/BioFoundation docs/model/LUNA.md 'Preprocessing' (per-channel z-score within each "
                     "sample)",
            "patch": BD + "luna.py LUNA.__init__ (patch_size=40)",
            "tokens": BD + "luna.py LUNA.forward: prepare_tokens -> cross_attn -> blocks -> norm (called here as "
                           "sub-modules; forward has no features output)",
            "head": BD + "luna.py LUNA.__init__ (n_outputs > 0: final_layer; 0: pretraining decoder_head + "
                         "channel_emb)",
            "channels": BD + "luna.py LUNA.build_channel_location_template <- util.py "
                             "extract_channel_locations_from_chs_info (chs_info['loc'][:3])",
            "weights": BD + "luna.py LUNA docstring (PulpBio/LUNA LUNA_base.safetensors); LUNA.mapping (renames)",
            "mask": BD + "luna.py LUNA.prepare_tokens (mask_token only for masked pretraining; GroupNorm in "
                         "_PatchEmbedNetwork pools over all channels, hence luna_patch_embed)",
        }),
    ModelSpec(
        cls="EEGDINO", aliases=("EEG-DINO", "eeg_dino", "eegdino"), sfreq=200.0, patch_kwarg="patch_size",
        units="uV", uv_factor=1.0 / 100.0, features=_eegdino_features, layout="channel_major", mask="zero-fill",
        channels="index", head_kwargs={"return_encoder_output": True}, head_attr=None, channel_set="nearest",
        max_channels=("n_channel_embeddings", 19), has_cls=True, embed_dim=lambda m: m.emb_dim,
        official="EEG-DINO-Small: n_layer 12, nhead 8, dim_feedforward 512, width 200 (class defaults); Medium: "
                 "eegdino.py EEGDINO_CONFIGS['medium']",
        sources={
            "rate": BD + "eegdino.py EEGDINO.__init__ (warns unless sfreq == 200: 'trained at 200 Hz')",
            "units": BD + "eegdino.py EEGDINO docstring warning (µV scaled by 1/100)",
            "patch": BD + "eegdino.py EEGDINO docstring (patch_size 200, fixed for the released weights)",
            "tokens": BD + "eegdino.py EEGDINO.forward(return_features=True) -> features [B, C·P, D], cls_token",
            "head": BD + "eegdino.py EEGDINO._make_head (return_encoder_output=True -> Identity)",
            "channels": BD + "eegdino.py _PatchEmbedding.forward (one-hot slot = input index; "
                             "n_channel_embeddings=19 'the released montage'); 19 = TUEG 10-20 channels ASSUMED "
                             "(order not stated in braindecode)",
            "weights": BD + "eegdino.py EEGDINO docstring (braindecode/eegdino-{small,medium}-pretrained)",
        }),
    ModelSpec(
        cls="PBT", aliases=("pbt", "PatchedBrainTransformer"), sfreq=250.0, patch_kwarg="d_input", units="zscore",
        features=_pbt_features, layout="channel_major", mask="zero-fill", channels="index",
        head_kwargs={"n_outputs": 1}, has_cls=True, embed_dim=lambda m: m.embed_dim,
        official="d_input 64, embed_dim 128, num_layers 4, num_heads 4 (class defaults = the paper's); "
                 "no released weights in braindecode",
        sources={
            "rate": PBT_REPO + "pre_train (resample = 250); " + BD
                    + "patchedtransformer.py PBT docstring (64 samples ~ 0.256 s at 250 Hz)",
            "units": PBT_REPO + "pre_train (z-score by zero_mean_unit_var(epochs, meta), grouping not inspected; "
                                "config freq [8, 45] Hz band-pass, not applied here)",
            "patch": BD + "patchedtransformer.py PBT.__init__ (d_input=64) and _Patcher.forward (flattens C x T "
                          "into d_input tokens: T must be a multiple of d_input)",
            "tokens": BD + "patchedtransformer.py PBT.forward (only the CLS reaches final_layer): forward hook on "
                           "PBT.transformer_encoder",
            "head": BD + "patchedtransformer.py PBT.__init__ (final_layer Linear, replaced by Identity)",
            "channels": BD + "patchedtransformer.py PBT.pos_embedding (one learned row per token index, table "
                             "(C·T)//d_input + 1: fixed channel count and window)",
            "weights": "none released for braindecode's PBT",
        }),
)}


def _norm_name(name: str) -> str:
    return name.replace("-", "").replace("_", "").lower()


def supported() -> list[str]:
    """Names of the models in the table."""
    return list(MODELS)


def resolve(model: str) -> ModelSpec:
    """The table entry of a braindecode class name (``"REVE"``, ``"EEG-DINO"``) or class path
    (``"braindecode.models.REVE"``); a model not in the table fails listing the ones that are."""
    name = model
    if "." in model:
        mod, _, attr = model.rpartition(".")
        try:
            name = getattr(importlib.import_module(mod), attr).__name__
        except (ImportError, AttributeError) as e:
            raise ValueError(f"model {model!r}: cannot import it ({e}); supported: {', '.join(supported())}") from e
    for spec in MODELS.values():
        if _norm_name(name) in {_norm_name(spec.cls), *map(_norm_name, spec.aliases)}:
            return spec
    listing = "; ".join(f"{s.cls} (also {', '.join(s.aliases)})" for s in MODELS.values())
    raise ValueError(
        f"model {model!r} is not in the braindecode encoder table (encoders.braindecode_model.MODELS); supported: "
        f"{listing}. LaBraM, EEGPT and CBraMod have "
        f"their own adapters (encoders.labram / eegpt / cbramod). To add a model, add a ModelSpec (see "
        f"docs/encoders.md).")


def fit_overlapping(n: int, size: int, step: int, mode: str) -> tuple[int, int]:
    """(samples, patches) of ``n`` samples zero-padded (``"pad"``) or cropped (``"crop"``) so that patches of
    ``size`` every ``step`` samples cover them exactly (``step == size``: whole patches)."""
    if mode not in ("pad", "crop"):
        raise ValueError(f"patch_fit: {mode!r} is not 'pad' or 'crop'")
    if n <= size:
        if mode == "crop" and n < size:
            raise ValueError(f"window of {n} samples is shorter than one patch ({size}); use patch_fit='pad'")
        return size, 1
    k = (math.ceil if mode == "pad" else math.floor)((n - size) / step)
    return size + k * step, k + 1


def window_zscore(x: Tensor, eps: float = 1e-6) -> Tensor:
    """Per-channel z-score over the time axis of each window."""
    mean = x.mean(-1, keepdim=True)
    std = x.std(-1, keepdim=True, unbiased=False)
    return (x - mean) / std.clamp_min(eps)


def mne_positions(ch_names: Sequence[str], montage: str) -> np.ndarray:
    """``[C, 3]`` MNE positions (metres, head frame) of the electrodes (``encoders.montage``)."""
    from encoders.montage import electrode_positions

    return electrode_positions(ch_names, montage)


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
    import mne

    from encoders.channel_mapping import electrode_unit_positions

    u = electrode_unit_positions(ch_names, montage)
    if positions_file is None:
        return u.astype(np.float32)
    with open(positions_file) as f:
        bank = {str(k).upper(): np.asarray(v, dtype=np.float64) for k, v in json.load(f).items()}
    known = {n.upper() for n in mne.channels.make_standard_montage("standard_1005").ch_names}
    names = sorted(n for n in bank if n in known and bank[n].shape == (3,))
    if len(names) < 4:
        raise ValueError(f"{positions_file}: fewer than 4 standard 10-05 names to register the montage on")
    s, rot, t = similarity_fit(electrode_unit_positions(names, "standard_1005"), np.stack([bank[n] for n in names]))
    return (s * u @ rot.T + t).astype(np.float32)


class BraindecodeEncoder(FoundationAdapter):
    """A braindecode foundation model from :data:`MODELS` as an ``EEGEncoder``, without its head.

    Input path (``prepare``; the table gives each model's facts, ``docs/encoders.md`` lists them):

    1. units: ``"uV"`` models get µV x factor (z-scored input reads 1 σ as ``zscore_uv`` µV); ``"zscore"`` models
       get our per-recording z-scored data as is, and physical units z-scored per window and channel;
       ``"window_zscore"`` models always get a per-window z-score (``window_zscore`` overrides); then ``±clip``;
    2. channels: ``channel_set="all"`` (every electrode, input order) or ``"nearest"`` (one electrode per name of
       ``vocab``, ``encoders.channel_mapping``), for models with a fixed channel vocabulary (EEG-DINO: 19 slots);
       positions (REVE ``pos``, LUNA ``chs_info['loc']``) come from MNE's ``montage``;
    3. resampling to the model's rate (``encoders._foundation.Resampler``), zero-padding (or cropping,
       ``patch_fit``) to whole patches (overlapping ones for REVE).

    Output: ``tokens [B, N, D]``: channel-major ``C'·P`` tokens (REVE, EEG-DINO, PBT) or one token per patch
    (LUNA: channels merged by cross-attention); ``token_time`` = patch index; ``pooled`` = mean over present
    tokens (``pooling="mean"``) or the model's summary token (``"cls"``: EEG-DINO global token, PBT CLS).

    Channel mask: ``"zero-fill"`` models get zeros for absent channels (their tokens still exist and are attended
    to, marked absent in ``token_mask``; ``pooled`` averages present tokens); LUNA *removes* them (left out of its
    channel cross-attention and of its location normalisation: the same output as without those electrodes).
    Either way an absent channel's values never reach the output.

    Args:
        model: table name (``"REVE"``, ``"LUNA"``, ``"EEGDINO"``/``"EEG-DINO"``, ``"PBT"``) or class path
            (``"braindecode.models.REVE"``).
        model_kwargs: size arguments of the braindecode class (class defaults = official sizes); the signal
            arguments (``n_chans``, ``n_times``, ``sfreq``, ``chs_info``, ``n_outputs``) are set here.
        pretrained: local weights file (``.safetensors`` or a torch file holding a state dict, plain or under
            ``pretrained_key``), loaded with ``weights_only=True``; braindecode's own renames (``Model.mapping``)
            are applied, pretraining decoders / heads listed in the table are dropped by name, and any other
            missing or unexpected key is an error naming it.
        pretrained_key: entry holding the state dict (default ``"state_dict"`` if present, else the whole file).
        pretrained_prefix: prefix stripped from checkpoint keys (e.g. ``"model."``).
        input_units: ``"zscore"`` (data default), ``"uV"`` (``data.scaling: none``), ``"mV"``, ``"V"``.
        zscore_uv: µV per standard deviation for z-scored input to a µV model.
        window_zscore: force (True) or forbid (False) the per-window z-score (``None``: the table's choice).
        channel_set, vocab, max_angle, montage: electrode choice (see above; defaults from the table).
        patch_fit: ``"pad"`` or ``"crop"``.
        pooling: ``"mean"`` or ``"cls"``.
        positions_file: REVE's position-bank JSON, to put electrodes in REVE's pretraining frame
            (:func:`reve_positions`); needed for meaningful pretrained REVE weights.
    """

    def __init__(self, n_channels: int, sfreq: float, n_times: int, ch_names: Sequence[str] | None = None, *,
                 model: str, model_kwargs: dict | None = None, pretrained: str | None = None,
                 pretrained_key: str | None = None, pretrained_prefix: str | None = None,
                 input_units: str = "zscore", zscore_uv: float = 10.0, window_zscore: bool | None = None,
                 channel_set: str | None = None, vocab: str | None = None, max_angle: float | None = None,
                 montage: str = "GSN-HydroCel-129", patch_fit: str = "pad", pooling: str = "mean",
                 positions_file: str | None = None):
        spec = resolve(model)
        kwargs = dict(model_kwargs or {})
        clash = sorted(set(kwargs) & set(SIGNAL_KWARGS))
        if clash:
            raise ValueError(f"model_kwargs must not set {clash}: the adapter sets them from the data and the table")
        if pooling not in ("mean", "cls") or (pooling == "cls" and not spec.has_cls):
            options = "'mean' or 'cls'" if spec.has_cls else "'mean'"
            raise ValueError(f"pooling: {pooling!r} is not available for {spec.cls} (use {options})")
        channel_set = channel_set or spec.channel_set
        idx, _ = named_channels(ch_names, n_channels, vocab or spec.vocab, channel_set, montage, max_angle)
        if spec.max_channels is not None:
            key, default = spec.max_channels
            limit = kwargs.get(key, default)
            if len(idx) > limit:
                raise ValueError(f"{spec.cls} takes at most {limit} channels ({key}; source: "
                                 f"{spec.sources['channels']}), got {len(idx)} with channel_set={channel_set!r}: "
                                 f"use channel_set: nearest (vocab {vocab or spec.vocab!r})")

        # the table's facts where FoundationAdapter reads them
        self.model_sfreq = spec.sfreq
        size = int(kwargs.get(spec.patch_kwarg, spec.default(spec.patch_kwarg)))
        overlap = int(kwargs.get(spec.step_kwarg, spec.default(spec.step_kwarg))) if spec.step_kwarg else 0
        self.patch_size = size
        self.model_units_per_uv = spec.uv_factor if spec.units == "uV" else 1.0
        super().__init__(n_channels, sfreq, n_times, ch_names, idx, input_units, zscore_uv, patch_fit)
        self.spec = spec
        self.model_name = spec.cls
        self.pooling = pooling
        self.patch_step = size - overlap
        if self.patch_step <= 0:
            raise ValueError(f"{spec.cls}: patch overlap {overlap} must be smaller than the patch ({size})")
        self.model_times, self.n_patches = fit_overlapping(self.n_resampled, size, self.patch_step, patch_fit)
        if spec.units == "uV":
            self.window_zscore = bool(window_zscore)
        else:
            self.scale = 1.0  # z-scored models: no physical scaling
            auto = spec.units == "window_zscore" or input_units != "zscore"
            self.window_zscore = auto if window_zscore is None else bool(window_zscore)
        self.clip = spec.clip

        names = [self.ch_names[i] for i in idx] if self.ch_names is not None else None
        if names is None:
            from encoders.channel_mapping import default_ch_names

            all_names = default_ch_names(n_channels)
            names = [all_names[i] for i in idx]
        self.model_ch_names = names
        xyz = mne_positions(names, montage)
        chs_info = [{"ch_name": n, "loc": np.r_[p, np.zeros(9)].astype(np.float64)} for n, p in zip(names, xyz)]

        build = dict(kwargs)
        build.update(spec.head_kwargs)
        build.update(n_chans=len(idx), n_times=self.model_times, sfreq=spec.sfreq)
        if spec.pass_chs_info:
            build["chs_info"] = chs_info
        with warnings.catch_warnings(), (spec.build_context() if spec.build_context else nullcontext()):
            warnings.filterwarnings("ignore", category=UserWarning, module="braindecode")
            self.model = spec.model_class(**build)
        if spec.head_attr is not None:
            setattr(self.model, spec.head_attr, nn.Identity())
        for pname in spec.unused_params:
            self.model.get_parameter(pname).requires_grad_(False)
        self.embed_dim = int(spec.embed_dim(self.model))

        if spec.channels == "positions":
            if pretrained and positions_file is None:
                warnings.warn(f"{spec.cls}: pretrained weights without positions_file — electrode positions are "
                              f"unit-sphere coordinates, not the model's pretraining frame", UserWarning)
            pos = torch.from_numpy(reve_positions(names, montage, positions_file))
        elif spec.channels == "chs_info":
            from braindecode.models.util import extract_channel_locations_from_chs_info

            pos = torch.from_numpy(np.asarray(extract_channel_locations_from_chs_info(chs_info), dtype=np.float32))
        else:
            pos = torch.zeros(len(idx), 3)
        self.register_buffer("positions", pos, persistent=False)

        n_ch = len(idx)
        if spec.layout == "channel_major":
            self.n_tokens = n_ch * self.n_patches
            token_time = torch.arange(self.n_patches).repeat(n_ch)
        else:
            self.n_tokens = self.n_patches
            token_time = torch.arange(self.n_patches)
        self.register_buffer("token_time", token_time, persistent=False)
        if pretrained:
            self.load_pretrained(pretrained, pretrained_key, pretrained_prefix)

    # ---- weights -----------------------------------------------------------------------------------------
    def load_pretrained(self, path: str, key: str | None = None, prefix: str | None = None) -> None:
        """Strictly load a local weights file into the braindecode model (see class docstring)."""
        sd = load_official(path, key or "state_dict")
        own = self.model.state_dict()
        rename = getattr(self.model, "mapping", None) or {}
        mapped, origin = {}, {}
        for k, v in sd.items():
            new = k[len(prefix):] if prefix and k.startswith(prefix) else k
            new = rename.get(new, new)
            if new not in own and new.startswith(self.spec.drop_keys):
                continue
            mapped[new], origin[new] = v, k
        load_mapped(self.model, mapped, origin, str(path))

    # ---- forward -----------------------------------------------------------------------------------------
    def prepare(self, eeg: Tensor, channel_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if self.window_zscore:
            self.check_input(eeg, channel_mask)
            eeg = window_zscore(eeg)
        x, present = super().prepare(eeg, channel_mask)
        if self.clip is not None:
            x = x.clamp(-self.clip, self.clip)
        return x, present

    def encode(self, x: Tensor, present: Tensor | None):
        tokens, cls = self.spec.features(self, x, present)
        if tokens.shape[1] != self.n_tokens:
            raise RuntimeError(f"{self.spec.cls} returned {tokens.shape[1]} tokens, expected {self.n_tokens}")
        mask = channel_major(present, self.n_patches) if self.spec.layout == "channel_major" else None
        return tokens, self.token_time, mask, cls if self.pooling == "cls" else None


def markdown_table() -> str:
    """The table of :data:`MODELS` as markdown (docs/encoders.md)."""
    rows = ["| model | rate | units | patch (samples) | tokens | channel mask | channels | official size |",
            "|---|---|---|---|---|---|---|---|"]
    for s in MODELS.values():
        size = s.default(s.patch_kwarg)
        step = f", overlap {s.default(s.step_kwarg)}" if s.step_kwarg else ""
        units = {"uV": f"µV × {s.uv_factor or 1:g}", "zscore": "z-scored (per recording as given, else per window)",
                 "window_zscore": "z-scored per window"}[s.units]
        units += f", clip ±{s.clip:g}" if s.clip else ""
        tokens = "channel × patch" if s.layout == "channel_major" else "patch (channels merged)"
        rows.append(f"| {s.cls} | {s.sfreq:g} Hz | {units} | {size}{step} | {tokens} | {s.mask} | {s.channels} | "
                    f"{s.official} |")
    rows.append("")
    for s in MODELS.values():
        rows.append(f"**{s.cls}** sources:")
        rows += [f"- {k}: {v}" for k, v in s.sources.items()]
        rows.append("")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())

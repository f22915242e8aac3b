"""The table of braindecode EEG foundation models that ``encoders.braindecode_model.BraindecodeEncoder`` serves.

Everything model-specific lives in :data:`MODELS`, one :class:`ModelSpec` per model, each fact with its source
(a file and function of braindecode 1.8.1 in ``site-packages/braindecode/models/``, the official repository, or the
paper); the per-model code it points to is in ``encoders.braindecode_features``. A model that is not in the table
fails (:func:`resolve`) with a message listing the ones that are. LaBraM, EEGPT and CBraMod have their own adapters
(``encoders.labram`` / ``eegpt`` / ``cbramod``) because their official checkpoints need key maps.
``python -m encoders.braindecode_table`` prints the table (the source of ``docs/encoders.md``).

Adding a model: one ``ModelSpec`` (rate, patch, units, head, how to get tokens, channel handling, sources) and, if
``forward`` cannot return tokens, a ``features`` function in ``encoders.braindecode_features`` calling its
sub-modules or a forward hook; then a tiny entry in ``tests/test_braindecode_model.py::TINY`` and a YAML in
``experiments/encoders/``.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from encoders.braindecode_features import (eegdino_tokens, luna_tokens, pbt_tokens, reve_tokens,
                                           reve_without_position_bank)

BD = "braindecode 1.8.1 braindecode/models/"
PBT_REPO = "PatchedBrainTransformer main_preTraining.py (the authors' code, timonkl/PatchedBrainTransformer, as " \
           "mirrored in braindecoding/PatchedBrainTransformer) "


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
    features: ``(encoder, x, present) -> (tokens [B, N, D], cls [B, D] | None)``, x = model input
        (``encoders.braindecode_features``).
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
    has_cls: the model has a summary token usable as ``readout="cls"``.
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



MODELS: dict[str, ModelSpec] = {s.cls: s for s in (
    ModelSpec(
        cls="REVE", aliases=("reve",), sfreq=200.0, patch_kwarg="patch_size", step_kwarg="patch_overlap",
        units="zscore", clip=15.0, features=reve_tokens, layout="channel_major", mask="zero-fill",
        channels="positions", pass_chs_info=False, head_kwargs={"n_outputs": 1},
        embed_dim=lambda m: m.embed_dim, drop_keys=("final_layer.", "cls_query_token"),
        build_context=reve_without_position_bank,
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
        features=luna_tokens, layout="patch", mask="remove", channels="chs_info", head_kwargs={"n_outputs": 1},
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
        units="uV", uv_factor=1.0 / 100.0, features=eegdino_tokens, layout="channel_major", mask="zero-fill",
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
        features=pbt_tokens, layout="channel_major", mask="zero-fill", channels="index",
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
        f"model {model!r} is not in the braindecode encoder table (encoders.braindecode_table.MODELS); supported: "
        f"{listing}. LaBraM, EEGPT and CBraMod have "
        f"their own adapters (encoders.labram / eegpt / cbramod). To add a model, add a ModelSpec (see "
        f"docs/encoders.md).")


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

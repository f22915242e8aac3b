"""Any braindecode EEG foundation model of the table as an ``EEGEncoder``, chosen by one YAML line.

``BraindecodeEncoder(model="REVE", model_kwargs={...})`` builds the braindecode class for our channels, rate and
window, removes its classification head, and returns pooled + token features through ``EncoderOutput``. The input
path is the shared one of the other pretrained-model adapters (``encoders._foundation.FoundationAdapter``): pick
channels, zero-fill absent ones, resample to the model's rate, pad/crop to whole patches, scale units.

The models and their facts (with sources) are the table ``encoders.braindecode_table.MODELS``; the per-model token
extraction, LUNA's channel removal and REVE's positions are in ``encoders.braindecode_features``. This file is the
adapter itself, the same for every model.
"""
from __future__ import annotations

import math
import warnings
from contextlib import nullcontext
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from encoders._foundation import WHERE, FoundationAdapter, channel_major, load_mapped, load_official, named_channels
from encoders.braindecode_features import reve_positions
from encoders.braindecode_table import resolve
from encoders.channel_mapping import default_ch_names
from chanmusic.core.electrodes import electrode_positions
from chanmusic.core.renamed import renamed
from encoders.pretrained_sources import check_config, resolve_pretrained

# keyword arguments the adapter sets itself (from the data and the table), never through model_kwargs
SIGNAL_KWARGS = ("n_outputs", "n_chans", "n_times", "sfreq", "chs_info", "input_window_seconds")


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


class BraindecodeEncoder(FoundationAdapter):
    """A braindecode foundation model from ``encoders.braindecode_table.MODELS`` as an ``EEGEncoder``, without its
    head.

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
    tokens (``readout="mean"``) or the model's summary token (``"cls"``: EEG-DINO global token, PBT CLS).

    Channel mask: ``"zero-fill"`` models get zeros for absent channels (their tokens still exist and are attended
    to, marked absent in ``token_mask``; ``pooled`` averages present tokens); LUNA *removes* them (left out of its
    channel cross-attention and of its location normalisation: the same output as without those electrodes).
    Either way an absent channel's values never reach the output.

    Args:
        model: table name (``"REVE"``, ``"LUNA"``, ``"EEGDINO"``/``"EEG-DINO"``, ``"PBT"``) or class path
            (``"braindecode.models.REVE"``).
        model_kwargs: size arguments of the braindecode class (class defaults = official sizes); the signal
            arguments (``n_chans``, ``n_times``, ``sfreq``, ``chs_info``, ``n_outputs``) are set here.
        init_from: published weights: a file (``.safetensors`` or a torch file holding a state dict, plain or under
            ``init_from_key``), braindecode folder or hub id (``encoders.pretrained_sources``; a folder's
            ``config.json`` must match this size), loaded with ``weights_only=True``; braindecode's own renames
            (``Model.mapping``) are applied, pretraining decoders / heads listed in the table are dropped by name,
            and any other missing or unexpected key is an error naming it.
        init_from_key: entry holding the state dict (default ``"state_dict"`` if present, else the whole file).
        init_from_prefix: prefix stripped from checkpoint keys (e.g. ``"model."``).
        input_units: ``"zscore"`` (data default), ``"uV"`` (``data.scaling: none``), ``"mV"``, ``"V"``.
        zscore_uv: µV per standard deviation for z-scored input to a µV model.
        window_zscore: force (True) or forbid (False) the per-window z-score (``None``: the table's choice).
        channel_set, vocab, max_angle, montage: electrode choice (see above; defaults from the table).
        patch_fit: ``"pad"`` or ``"crop"``.
        readout: what ``pooled`` is: ``"mean"`` of the present tokens or the model's ``"cls"`` token.
        positions_file: REVE's position-bank JSON, to put electrodes in REVE's pretraining frame
            (``encoders.braindecode_features.reve_positions``); needed for meaningful pretrained REVE weights.
        pretrained, pretrained_key, pretrained_prefix: deprecated names of init_from, init_from_key, init_from_prefix.
        pooling: deprecated name of readout.
    """

    def __init__(self, n_channels: int, sfreq: float, n_times: int, ch_names: Sequence[str] | None = None, *,
                 model: str, model_kwargs: dict | None = None, init_from: str | None = None,
                 init_from_key: str | None = None, init_from_prefix: str | None = None,
                 input_units: str = "zscore", zscore_uv: float = 10.0, window_zscore: bool | None = None,
                 channel_set: str | None = None, vocab: str | None = None, max_angle: float | None = None,
                 montage: str = "GSN-HydroCel-129", patch_fit: str = "pad", readout: str = "mean",
                 positions_file: str | None = None, pretrained: str | None = None,
                 pretrained_key: str | None = None, pretrained_prefix: str | None = None, pooling: str | None = None):
        init_from = renamed(WHERE, "pretrained", "init_from", pretrained, init_from, None)
        init_from_key = renamed(WHERE, "pretrained_key", "init_from_key", pretrained_key, init_from_key, None)
        init_from_prefix = renamed(WHERE, "pretrained_prefix", "init_from_prefix", pretrained_prefix, init_from_prefix,
                                   None)
        readout = renamed(WHERE, "pooling", "readout", pooling, readout, "mean")
        spec = resolve(model)
        kwargs = dict(model_kwargs or {})
        clash = sorted(set(kwargs) & set(SIGNAL_KWARGS))
        if clash:
            raise ValueError(f"model_kwargs must not set {clash}: the adapter sets them from the data and the table")
        if readout not in ("mean", "cls") or (readout == "cls" and not spec.has_cls):
            options = "'mean' or 'cls'" if spec.has_cls else "'mean'"
            raise ValueError(f"readout: {readout!r} is not available for {spec.cls} (use {options})")
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
        super().__init__(n_channels, sfreq, n_times, ch_names, idx, input_units, zscore_uv, patch_fit,
                         absent="zero")  # these models handle absent channels inside encode (see above)
        self.spec = spec
        self.model_name = spec.cls
        self.readout = readout
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
            all_names = default_ch_names(n_channels)
            names = [all_names[i] for i in idx]
        self.model_ch_names = names
        xyz = electrode_positions(names, montage)  # [C', 3] MNE positions (metres, head frame)
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
            if init_from and positions_file is None:
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
        if init_from:
            self.load_pretrained(init_from, init_from_key, init_from_prefix)
            self.weights_source = str(init_from)  # lets a frozen-encoder run know it has weights to freeze

    # ---- weights -----------------------------------------------------------------------------------------
    def load_pretrained(self, path: str, key: str | None = None, prefix: str | None = None) -> None:
        """Strictly load weights (a file, a braindecode folder or hub id) into the braindecode model (see class
        docstring)."""
        src = resolve_pretrained(path)
        check_config(src, self.model, ignore=tuple(self.spec.head_kwargs))
        sd = load_official(str(src.file), key or "state_dict")
        own = self.model.state_dict()
        rename = getattr(self.model, "mapping", None) or {}
        mapped, origin = {}, {}
        for k, v in sd.items():
            new = k[len(prefix):] if prefix and k.startswith(prefix) else k
            new = rename.get(new, new)
            if new not in own and new.startswith(self.spec.drop_keys):
                continue
            mapped[new], origin[new] = v, k
        load_mapped(self.model, mapped, origin, src.where)

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
        return tokens, self.token_time, mask, cls if self.readout == "cls" else None

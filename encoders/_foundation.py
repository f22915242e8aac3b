"""Shared adapter pieces for the pretrained EEG models (LaBraM, EEGPT, CBraMod): one place for each.

- :class:`Resampler`: band-limited (windowed-sinc) resampling inside ``forward``, one matmul in torch.
- :func:`units_to_uv`: the factor from the data's units to µV (z-scored data get a documented scale).
- :class:`FoundationAdapter`: the common ``EEGEncoder`` around a braindecode model: picks and orders the
  channels, zero-fills absent ones, resamples, pads/crops to whole patches, scales units, then lets the
  subclass run the model — on the present channels only (``absent="remove"``: absent channels are left out,
  as if never recorded) or on the zero-filled grid (``absent="zero"``); pools over present tokens. It also
  declares the model's layers for a layer-wise learning-rate decay (``lr_layer_id``, ``n_lr_layers``) and its
  weight-decay exemptions (``no_weight_decay_names``), read by ``chanmusic.modules.optim.recipe_param_groups``.
- :func:`load_mapped`: strict loading of a renamed official state dict that names every bad key by its
  official name.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from encoders.base import EEGEncoder, EncoderOutput, masked_mean
from chanmusic.core.checkpoints import CheckpointError, key_diff, load_strict, safe_load

WHERE = "model.init_args.encoder.init_args"  #: where an adapter's settings sit in a stage config

INPUT_UNITS = ("zscore", "uV", "mV", "V")
ABSENT = ("remove", "zero")
UV_PER_UNIT = {"uV": 1.0, "mV": 1e3, "V": 1e6}


def units_to_uv(input_units: str, zscore_uv: float) -> float:
    """Multiplier taking the data's units to µV.

    ``"zscore"`` (the data module's default, per-channel z-scoring per recording) has no physical unit; we
    read one standard deviation as ``zscore_uv`` µV (default 10 µV, the order of the broadband standard
    deviation of cleaned scalp EEG), which puts the model input on the scale of its pretraining data.
    ``"uV"`` (``data.scaling: none``), ``"mV"`` and ``"V"`` are physical.
    """
    if input_units == "zscore":
        if zscore_uv <= 0:
            raise ValueError(f"zscore_uv must be positive, got {zscore_uv}")
        return float(zscore_uv)
    if input_units not in UV_PER_UNIT:
        raise ValueError(f"input_units: {input_units!r} is not one of {INPUT_UNITS}")
    return UV_PER_UNIT[input_units]


class Resampler(nn.Module):
    """Resample ``[..., T]`` from ``sfreq_in`` to ``sfreq_out`` Hz: ``T' = round(T * out / in)`` samples.

    Output sample ``j`` sits at input time ``t_j = j * in / out`` (samples) and is
    ``sum_i x[i] h(t_j - i)``, with ``h`` a Hann-windowed sinc of ``zero_crossings`` lobes each side and
    cut-off ``min(1, out/in)`` x the input Nyquist (anti-aliasing when downsampling). Each output's weights
    are normalised to sum to 1, so DC passes unchanged, including near the window edges where the kernel is
    truncated. Upsampling reproduces the input exactly at coinciding instants. The matrix ``[T, T']`` is
    built once per length and device (not a parameter, not in the state dict) and applied as a matmul.
    """

    def __init__(self, sfreq_in: float, sfreq_out: float, zero_crossings: int = 16):
        super().__init__()
        if sfreq_in <= 0 or sfreq_out <= 0:
            raise ValueError("sampling rates must be positive")
        self.sfreq_in, self.sfreq_out, self.zero_crossings = float(sfreq_in), float(sfreq_out), int(zero_crossings)
        self._cache: dict[tuple, Tensor] = {}

    def n_out(self, n_in: int) -> int:
        return int(round(n_in * self.sfreq_out / self.sfreq_in))

    def matrix(self, n_in: int) -> np.ndarray:
        """The ``[n_in, n_out]`` float64 resampling matrix."""
        ratio = self.sfreq_in / self.sfreq_out
        cutoff = min(1.0, self.sfreq_out / self.sfreq_in)
        half = self.zero_crossings / cutoff
        t = np.arange(self.n_out(n_in)) * ratio  # output instants in input samples
        d = t[None, :] - np.arange(n_in)[:, None]
        h = cutoff * np.sinc(cutoff * d) * np.where(np.abs(d) < half, 0.5 * (1 + np.cos(np.pi * d / half)), 0.0)
        return h / h.sum(0, keepdims=True)

    def forward(self, x: Tensor) -> Tensor:
        if self.sfreq_in == self.sfreq_out:
            return x
        key = (x.shape[-1], x.device, x.dtype)
        if key not in self._cache:
            self._cache[key] = torch.from_numpy(self.matrix(x.shape[-1])).to(device=x.device, dtype=x.dtype)
        return x @ self._cache[key]


def fit_to_patches(n: int, patch: int, mode: str) -> int:
    """Samples the model gets: ``n`` zero-padded up (``"pad"``) or cropped down (``"crop"``) to whole patches."""
    if mode == "pad":
        return max(1, math.ceil(n / patch)) * patch
    if mode == "crop":
        if n < patch:
            raise ValueError(f"window of {n} samples is shorter than one patch ({patch}); use patch_fit='pad'")
        return (n // patch) * patch
    raise ValueError(f"patch_fit: {mode!r} is not 'pad' or 'crop'")


class FoundationAdapter(EEGEncoder):
    """Common input path of the pretrained-model adapters (see each subclass for its model).

    ``prepare(eeg, channel_mask)`` gives exactly what the braindecode model receives:

    1. pick and order the model's channels (``channel_index``, electrodes may repeat);
    2. zero-fill absent channels (``channel_mask`` False);
    3. resample ``sfreq`` -> ``model_sfreq`` (:class:`Resampler`);
    4. zero-pad (or crop) to a whole number of patches;
    5. scale to the model's units: ``x * units_to_uv(input_units, zscore_uv) * model_units_per_uv``.

    Then ``forward`` runs the model (``encode``) on that grid, or, when ``absent="remove"`` and some channel is
    absent, once per distinct set of present channels on those channels alone (``encode_subset``), so an absent
    channel has no token at all — exactly as if the recording had never had it. Its place in the fixed token grid
    is zero and ``token_mask`` marks it absent. Samples sharing a channel set run together (one call when the
    whole batch has the same channels; one per sample under per-sample channel dropout).

    Subclasses set ``model_sfreq``, ``patch_size``, ``model_units_per_uv`` and implement ``encode`` and
    ``encode_subset``.
    """

    model_sfreq: float
    patch_size: int
    model_units_per_uv: float
    n_lr_layers: int = 0

    def __init__(self, n_channels: int, sfreq: float, n_times: int, ch_names: Sequence[str] | None,
                 channel_index: Sequence[int], input_units: str, zscore_uv: float, patch_fit: str,
                 absent: str = "remove"):
        super().__init__(n_channels, sfreq, n_times, ch_names)
        if len(channel_index) == 0:
            raise ValueError(f"{type(self).__name__}: no input channel is mapped to the model")
        if absent not in ABSENT:
            raise ValueError(f"absent: {absent!r} is not one of {ABSENT}")
        self.absent = absent
        self.register_buffer("channel_index", torch.as_tensor(list(channel_index), dtype=torch.long),
                             persistent=False)
        self.input_units = input_units
        self.scale = units_to_uv(input_units, zscore_uv) * self.model_units_per_uv
        self.resampler = Resampler(sfreq, self.model_sfreq)
        self.n_resampled = self.resampler.n_out(n_times)
        self.model_times = fit_to_patches(self.n_resampled, self.patch_size, patch_fit)
        self.n_patches = self.model_times // self.patch_size

    @property
    def n_model_channels(self) -> int:
        return int(self.channel_index.numel())

    def prepare(self, eeg: Tensor, channel_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """eeg ``[B, C, T]`` -> (model input ``[B, C', T']``, present ``[B, C']`` bool or ``None``)."""
        self.check_input(eeg, channel_mask)
        if eeg.shape[-1] != self.n_times:
            raise ValueError(f"{type(self).__name__} was built for windows of {self.n_times} samples "
                             f"(n_times), got {eeg.shape[-1]}")
        x = eeg.index_select(1, self.channel_index)
        present = None
        if channel_mask is not None:
            present = channel_mask.to(torch.bool).index_select(1, self.channel_index)
            x = x * present.unsqueeze(-1).to(x.dtype)
        x = self.resampler(x)
        if x.shape[-1] < self.model_times:
            x = nn.functional.pad(x, (0, self.model_times - x.shape[-1]))
        x = x[..., : self.model_times] * self.scale
        return x, present

    def encode(self, x: Tensor, present: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """Model input -> (tokens ``[B, N, D]``, token_time ``[N]``, token_mask ``[B, N]`` | None, pooled | None)."""
        raise NotImplementedError

    def encode_subset(self, x: Tensor, kept: Tensor) -> tuple[Tensor, Tensor | None]:
        """The model on the kept channels only: ``x [b, C', T']`` (model grid; only ``kept`` rows are read),
        ``kept [k]`` indices into the model's channels -> (tokens ``[b, N, D]`` placed in the full grid, zero where
        nothing was computed; pooled ``[b, D]`` or None)."""
        raise NotImplementedError

    def token_mask_of(self, present: Tensor) -> Tensor | None:
        """Token mask ``[B, N]`` of the model-channel mask ``present [B, C']`` (None: tokens are not per channel)."""
        return channel_major(present, self.n_patches)

    def encode_removed(self, x: Tensor, present: Tensor):
        """``encode`` with absent channels left out: one ``encode_subset`` per distinct row of ``present``."""
        patterns, inverse = torch.unique(present.to(torch.uint8), dim=0, return_inverse=True)
        tokens = x.new_zeros(x.shape[0], self.n_tokens, self.embed_dim)
        pooled = None
        for g in range(len(patterns)):
            rows = (inverse == g).nonzero().squeeze(1)
            kept = patterns[g].nonzero().squeeze(1)
            if kept.numel() == 0:
                continue  # nothing recorded: zero tokens, zero pooled
            tok, pool = self.encode_subset(x.index_select(0, rows), kept)
            tokens = tokens.index_put((rows,), tok.to(tokens.dtype))
            if pool is not None:
                pooled = pool.new_zeros(x.shape[0], pool.shape[-1]) if pooled is None else pooled
                pooled = pooled.index_put((rows,), pool)
        return tokens, self.token_time, self.token_mask_of(present), pooled

    def forward(self, eeg: Tensor, channel_mask: Tensor | None = None) -> EncoderOutput:
        x, present = self.prepare(eeg, channel_mask)
        if present is not None and self.absent == "remove" and not bool(present.all()):
            tokens, token_time, token_mask, pooled = self.encode_removed(x, present)
        else:
            tokens, token_time, token_mask, pooled = self.encode(x, present)
        if pooled is None:
            pooled = masked_mean(tokens, token_mask)
        return EncoderOutput(pooled, tokens, token_time, None, token_mask)

    # ---- what a fine-tuning recipe needs (chanmusic.modules.optim.recipe_param_groups) ----------------------
    def lr_layer_id(self, name: str) -> int:
        """Layer of parameter ``name`` (relative to this module) for layer-wise lr decay: 0 = embeddings,
        ``1..n_lr_layers`` = blocks, ``n_lr_layers + 1`` = above them. Default: everything on top."""
        return self.n_lr_layers + 1

    def no_weight_decay_names(self) -> set[str]:
        """Parameter names (relative to this module) the official recipe exempts from weight decay."""
        return set()


def channel_major(present: Tensor | None, n_patches: int) -> Tensor | None:
    """Token mask of a channel-major ``[C·P]`` token grid from the channel mask ``[B, C]``."""
    return None if present is None else present.repeat_interleave(n_patches, dim=1)


def load_official(path: str, key: str | None = None) -> dict[str, Tensor]:
    """The state dict of an official checkpoint file, loaded with ``weights_only=True``.

    ``key``: the entry holding the weights (``"model"`` for LaBraM, ``"state_dict"`` for Lightning files);
    a file without it is taken as a plain state dict. Training scripts built on ``argparse`` store their
    ``args`` Namespace beside the weights, so ``argparse.Namespace`` (a plain attribute bag) is the one
    class allowed besides tensors and containers.
    """
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = safe_load(path)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{path}: expected a dict, got {type(ckpt).__name__}")
    sd = ckpt[key] if key is not None and key in ckpt else ckpt
    bad = [k for k, v in sd.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries {bad[:5]} are not tensors — is this a state dict"
                              f"{f' (expected one under {key!r})' if key else ''}?")
    return dict(sd)


def load_mapped(module: nn.Module, mapped: Mapping[str, Tensor], origin: Mapping[str, str], source: str,
                to_official: Callable[[str], str] | None = None) -> None:
    """Strictly load ``mapped`` (our names) into ``module``; errors name the official key of each bad entry.

    ``origin``: our name -> the official name it came from. ``to_official``: our name -> the official name
    we expected for it (to name missing keys as they should appear in the file).
    """
    own = module.state_dict()
    missing, unexpected, shape = key_diff(module, mapped)
    if missing or unexpected or shape:
        parts = []
        if unexpected:
            parts.append("unexpected keys (official -> mapped): " + ", ".join(
                f"{origin.get(k, k)} -> {k}" for k in unexpected[:10]))
        if missing:
            parts.append("missing keys (model needs, official name expected): " + ", ".join(
                f"{k} (official {to_official(k) if to_official else k})" for k in missing[:10]))
        if shape:
            parts.append("shape mismatch: " + ", ".join(
                f"{origin.get(k, k)} {tuple(mapped[k].shape)} vs {tuple(own[k].shape)}" for k in shape[:10]))
        raise CheckpointError(f"{source}: official weights do not match {type(module).__name__}: " + "; ".join(parts))
    load_strict(module, dict(mapped), source)


CHANNEL_SETS = ("all", "nearest")


def named_channels(ch_names: Sequence[str] | None, n_channels: int, vocab: str, channel_set: str,
                   montage: str, max_angle: float | None) -> tuple[list[int], list[str]]:
    """Input indices and vocabulary names the model gets (``encoders.channel_mapping`` for the method).

    ``channel_set="all"``: every electrode, in input order, under its nearest name (names may repeat).
    ``"nearest"``: one electrode per reachable name (the closest), in the vocabulary's order.
    ``max_angle``: drop electrodes farther than this many degrees from their name (``None`` = keep all).
    """
    from encoders.channel_mapping import map_to_vocabulary

    if channel_set not in CHANNEL_SETS:
        raise ValueError(f"channel_set: {channel_set!r} is not one of {CHANNEL_SETS}")
    cmap = map_to_vocabulary(ch_names, vocab, montage, n_channels=n_channels)
    idx = list(range(len(cmap.electrodes))) if channel_set == "all" else cmap.nearest()
    if max_angle is not None:
        idx = [i for i in idx if cmap.angles[i] <= max_angle]
    return idx, [cmap.targets[i] for i in idx]

"""The one offline resampler: polyphase filtering (``scipy.signal.resample_poly``, Kaiser window).

Used for song audio (``datamodules.stimulus_audio``, ``chanmusic.audio``) and for EEG in ``prepare``
(``datamodules.preprocess``); it lives in the bottom layer because both of those layers need it. Encoders that
resample inside the model keep their own torch resamplers.
Plain numpy/scipy; torch is only touched when a tensor is passed in (never imported here).
"""
from __future__ import annotations

import math
import sys
from fractions import Fraction
from typing import Any

import numpy as np

MAX_DENOMINATOR = 1000
"""Largest down-sampling factor used to approximate the ratio of two non-integer rates."""


def polyphase_factors(sr_from: float, sr_to: float) -> tuple[int, int]:
    """``(up, down)`` with ``up / down`` = ``sr_to / sr_from``, in lowest terms.

    Integer rates give the exact ratio (divided by their gcd); other rates the closest fraction whose
    denominator is at most :data:`MAX_DENOMINATOR`.
    """
    if float(sr_from) <= 0 or float(sr_to) <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_from} -> {sr_to}")
    if float(sr_from).is_integer() and float(sr_to).is_integer():
        a, b = int(sr_from), int(sr_to)
        g = math.gcd(a, b)
        return b // g, a // g
    frac = Fraction(float(sr_to) / float(sr_from)).limit_denominator(MAX_DENOMINATOR)
    return frac.numerator, frac.denominator


def resample(x: Any, sr_from: float, sr_to: float, axis: int = -1, *, dtype: Any = np.float32) -> Any:
    """Resample ``x`` along ``axis`` from ``sr_from`` to ``sr_to`` Hz (factors from :func:`polyphase_factors`).

    ``x`` is a numpy array or a torch tensor of any shape (audio ``[..., S]``, EEG ``[C, T]`` with
    ``axis=1``). Its values are taken at ``dtype`` (float32 for audio; EEG preprocessing passes float64),
    filtered in float64 and returned at ``dtype``; a tensor comes back as a tensor on its device, with its own
    dtype if floating. The result has ``ceil(n * up / down)`` samples along ``axis``. Equal rates return
    ``x`` itself.
    """
    up, down = polyphase_factors(sr_from, sr_to)
    if up == down:
        return x
    from scipy.signal import resample_poly

    torch = sys.modules.get("torch")
    is_tensor = torch is not None and isinstance(x, torch.Tensor)
    dtype = np.dtype(dtype)
    if is_tensor:
        values = x.detach().to("cpu", getattr(torch, dtype.name)).numpy()
    else:
        values = np.asarray(x, dtype=dtype)
    y = resample_poly(values.astype(np.float64, copy=False), up, down, axis=axis).astype(dtype, copy=False)
    if is_tensor:
        return torch.from_numpy(y).to(device=x.device, dtype=x.dtype if x.is_floating_point() else None)
    return y

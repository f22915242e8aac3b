"""EEG preprocessing steps applied in ``prepare`` (each a setting, each part of the cache key)."""
from __future__ import annotations

import numpy as np

from chanmusic.core.resample import resample as polyphase_resample


def preprocess_recording(eeg: np.ndarray, sfreq: float, bandpass=None, average_reference: bool = False,
                         resample: float | None = None, scaling: str = "zscore",
                         clip: float | None = None) -> tuple[np.ndarray, float, dict[str, int]]:
    """Preprocess one recording.

    Args:
        eeg: ``[C, T]`` µV.
    Returns:
        ``(eeg [C, T'] float32, sfreq', counts)`` where counts has ``clipped`` (values clipped) and
        ``flat_channels`` (channels with zero variance, left at 0 after scaling).
    """
    x = eeg.astype(np.float64, copy=True)
    counts = {"clipped": 0, "flat_channels": 0}
    if bandpass is not None:
        import mne

        lo, hi = bandpass
        x = mne.filter.filter_data(x, sfreq, lo, hi, verbose="error")
    if average_reference:
        x -= x.mean(0, keepdims=True)
    if resample is not None and float(resample) != float(sfreq):
        x = polyphase_resample(x, sfreq, resample, axis=1, dtype=np.float64)
        sfreq = float(resample)
    if scaling == "zscore":
        center, scale = x.mean(1, keepdims=True), x.std(1, keepdims=True)
    elif scaling == "robust":
        q25, q50, q75 = np.percentile(x, [25, 50, 75], axis=1, keepdims=True)
        center, scale = q50, (q75 - q25) / 1.349  # IQR of a unit normal
    elif scaling == "none":
        center, scale = 0.0, None
    else:
        raise ValueError(f"scaling: {scaling!r} is not one of zscore, robust, none")
    if scale is not None:
        flat = scale[:, 0] <= 1e-12
        counts["flat_channels"] = int(flat.sum())
        scale = np.where(scale <= 1e-12, np.inf, scale)
        x = (x - center) / scale
    if clip is not None:
        over = np.abs(x) > clip
        counts["clipped"] = int(over.sum())
        np.clip(x, -clip, clip, out=x)
    return x.astype(np.float32), float(sfreq), counts

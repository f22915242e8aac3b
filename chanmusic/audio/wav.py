"""Writing audio to WAV files (``write_wav``); soundfile is imported on the first call only."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from chanmusic.audio._common import to_numpy

log = logging.getLogger(__name__)


def write_wav(path: str | os.PathLike, audio: Any, sr: int, subtype: str = "FLOAT") -> Path:
    """Write ``audio`` (``[S]`` mono or ``[C, S]`` channels-first; numpy or torch) to a WAV file.

    ``subtype`` is ``"FLOAT"`` (32-bit float, values kept as they are) or ``"PCM_16"`` (values clipped to
    [-1, 1] first, with a logged warning if anything was clipped). Parent folders are created. Returns the path.
    """
    import soundfile as sf

    path = Path(path)
    x = to_numpy(audio)
    if x.ndim == 2:
        x = x.T  # soundfile wants [frames, channels]
    elif x.ndim != 1:
        raise ValueError(f"write_wav expects [S] or [C, S] audio, got shape {x.shape}")
    subtype = subtype.upper()
    if subtype not in ("FLOAT", "PCM_16"):
        raise ValueError(f"subtype must be 'FLOAT' or 'PCM_16', got {subtype!r}")
    if not np.isfinite(x).all():
        raise ValueError(f"{path}: audio contains NaN or inf")
    if subtype == "PCM_16":
        n_clip = int((np.abs(x) > 1.0).sum())
        if n_clip:
            log.warning("write_wav(%s): %d samples outside [-1, 1] clipped for PCM_16", path, n_clip)
        x = np.clip(x, -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x.astype(np.float32), int(sr), subtype=subtype)
    return path

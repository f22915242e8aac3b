"""What the audio modules share: CLAP's fixed input format, the ``"tiny-random"`` spec, array conversion, seeded
model building, the banner that announces a random model, and file/folder stamps for cache identities.

Only numpy and torch are imported here, so every module of ``chanmusic.audio`` stays cheap to import.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

log = logging.getLogger(__name__)

CLAP_SR = 48000              #: every CLAP here (laion-clap HTSAT and transformers CLAP) takes 48 kHz audio
CLAP_CLIP_SAMPLES = 480000   #: 10 s at 48 kHz: the CLAP input window
CLAP_DIM = 512               #: the joint CLAP space (and AudioLDM-S's conditioning width)

TINY_RANDOM = "tiny-random"

# Bumped whenever the waveform -> embedding preprocessing changes, so embedding caches keyed on `identity` expire.
CLAP_PREP_VERSION = "prep1:center-crop-10s,repeatpad"


def to_numpy(audio: Any) -> np.ndarray:
    """A torch tensor (any device) or array-like as a float32 numpy array of the same shape."""
    if isinstance(audio, torch.Tensor):
        return audio.detach().to("cpu", torch.float32).numpy()
    return np.asarray(audio, dtype=np.float32)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator inside the block and restore the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def announce_random(what: str, description: str) -> None:
    """Log a banner warning that ``what`` is a randomly initialised model (``description`` says which)."""
    bar = "!" * 78
    log.warning("\n%s\n!! %s: %s\n!! Real checkpoints load from a local path or hub id (see chanmusic/audio/).\n%s",
                bar, what, description, bar)


def file_stamp(path: Path) -> str:
    """``size:mtime_ns`` of a file, for cache keys."""
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def dir_stamp(path: Path) -> str:
    """size:mtime of every file directly in (and one level below) a model folder, for cache keys."""
    parts = []
    for p in sorted(list(path.glob("*")) + list(path.glob("*/*"))):
        if p.is_file():
            parts.append(f"{p.relative_to(path)}={file_stamp(p)}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]

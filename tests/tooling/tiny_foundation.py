"""Tiny foundation-model encoders (LaBraM, EEGPT, CBraMod) on NMED's 125 electrodes, for the tests that load
official-layout checkpoints into them (test_baselines, test_pretrained_sources)."""
from __future__ import annotations

from encoders.cbramod import CBraModEncoder
from encoders.eegpt import EEGPTEncoder
from encoders.labram import LaBraMEncoder
from chanmusic.core.electrodes import NMED_CH_NAMES

SFREQ, N_TIMES, C = 125.0, 250, 125
NAMES = list(NMED_CH_NAMES)
TINY = {
    "labram": (LaBraMEncoder, dict(embed_dim=100, num_layers=1, num_heads=4)),
    "eegpt": (EEGPTEncoder, dict(embed_dim=32, embed_num=2, depth=1, num_heads=4)),
    "cbramod": (CBraModEncoder, dict(n_layer=1, nhead=4, dim_feedforward=64)),
}


def build(name: str, **kw):
    """The tiny ``name`` encoder (``TINY``) for 125 channels, 2-s windows at 125 Hz; ``kw`` override its sizes."""
    cls, size = TINY[name]
    return cls(C, SFREQ, N_TIMES, NAMES, **{**size, **kw})

"""NMED-format demo data: synthetic songs and synthetic EEG that weakly follows them, for runs without the releases.

:func:`write_demo` writes a small set in the real release layout (NMED-T ``songNN_Imputed.mat``, NMED-H condition
archives) with ``stimuli/songNN.wav``, so the demo goes through exactly the readers real data go through;
:class:`DemoGenerator` computes the same arrays in memory (the tests compare them with what the reader returns).
Deterministic for a seed, generated on demand, never committed. The response model, noise model, SNR and their
reasons are in ``docs/synthetic.md``.
"""
from __future__ import annotations

from .features import FEATURE_NAMES, audio_features
from .generator import DemoGenerator, RecordingParts
from .music import song_bpm, synth_song
from .response import ResponseMap
from .writer import write_demo

__all__ = [
    "FEATURE_NAMES",
    "DemoGenerator",
    "RecordingParts",
    "ResponseMap",
    "audio_features",
    "song_bpm",
    "synth_song",
    "write_demo",
]

"""Seed streams of the demo generator: one tag per component, so every component (song audio, response map
and its per-subject perturbation, session noise, recording noise, subject order in a file) draws from its own
independent, reproducible stream (``numpy`` ``default_rng([tag, ...])`` / ``SeedSequence``). Streams of a
recording also carry its dataset's code (:func:`datamodules.registry.dataset_code`: NMED-T 1, NMED-H 2)."""
from __future__ import annotations

MUSIC, MAP, MAP_SUBJ, SESSION, REC, ORDER = 101, 202, 303, 404, 505, 606

"""A second synthetic EEG set in the NMED-T release layout, whose response model — music-driven dipoles seen through
a lead field, per-subject response kernels, induced alpha — was designed without reading the demo generator
(``datamodules.synthetic``): an outside check that a recipe learns beyond the data it was built with.

:func:`write_dipole_set` writes ``songNN_Imputed.mat``, ``stimuli/songNN.wav`` and ``synthetic_dipole.json``
(settings and ground truth), which ``read_recordings(root, "nmed-t")`` and ``chanmusic prepare`` read unchanged;
``python -m datamodules.synthetic_dipole ROOT`` writes it from the shell. One module per idea: :mod:`.music`,
:mod:`.features`, :mod:`.head` (lead field), :mod:`.response`, :mod:`.noise`, :mod:`.snr`, :mod:`.config` (settings,
seed streams), :mod:`.writer`; the choices and their reasons are in ``docs/synthetic_dipole.md``.
"""
from __future__ import annotations

from .config import AUDIO_SR, SFREQ, DipoleConfig
from .snr import measure_snr_db, responding
from .writer import TRUTH_FILE, write_dipole_set

__all__ = ["DipoleConfig", "AUDIO_SR", "SFREQ", "TRUTH_FILE", "measure_snr_db", "responding", "write_dipole_set"]

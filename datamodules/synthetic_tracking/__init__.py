"""A synthetic NMED-T-format set whose EEG tracks its music as the published literature on music-evoked EEG describes
(docs/synthetic_tracking.md), designed without reading chanmusic's other generators or its model's recipe.

:func:`write_synthetic_tracking` writes ``songNN_Imputed.mat`` (read by :func:`datamodules.nmed.read_recordings`) and
``stimuli/songNN.wav``; :func:`measure_snr` measures the realised SNR from a set and its no-music twin.

Modules: :mod:`.layout` (what is written, random streams), :mod:`.music` (the songs), :mod:`.features` (envelope and
spectral flux), :mod:`.anatomy` (dipole maps per subject), :mod:`.response` (TRFs, beat-locked response, alpha
modulation), :mod:`.nuisance` (1/f background, blinks, muscle, line noise, drift, electrode faults), :mod:`.release`
(acquisition and the release's preprocessing), :mod:`.snr` (the knob and its measurement), :mod:`.writer` (files),
``__main__`` (``python -m datamodules.synthetic_tracking DIR --snr-db -9``).
"""
from .snr import measure_snr, snr_db
from .writer import write_synthetic_tracking

__all__ = ["measure_snr", "snr_db", "write_synthetic_tracking"]

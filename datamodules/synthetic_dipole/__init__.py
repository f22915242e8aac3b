"""A second synthetic EEG response model in the NMED-T release layout — music-driven dipoles seen through a lead
field, per-subject response kernels, induced alpha — designed independently of the demo generator
(``datamodules.synthetic``): its author did not read that package or its tests, only the NMED readers
(``datamodules.nmed``) for the file format. Its purpose is an outside check: a recipe that learns only on the data
it was built with fails here.

:func:`write_dipole_set` writes ``song21_Imputed.mat`` … (``data<NN>`` float32 ``[125, T, S]`` µV, ``subs<NN>``,
``fs`` = 125; default 6 subjects × 10 songs × 180 s), ``stimuli/song<NN>.wav`` (16 kHz; audio sample 0 = EEG
sample 0; 1 s longer than the EEG) and ``synthetic_dipole.json`` (settings + ground truth).
``read_recordings(root, "nmed-t")`` and ``chanmusic prepare`` read it unchanged. ``python -m datamodules.synthetic_dipole ROOT`` writes it from the shell.

The model, one module per idea (full choices in ``docs/synthetic_dipole.md``):

* :mod:`.music` — additive synthesiser: melody (random walk on a song-specific scale), bass, drums on a
  song-specific 8-step pattern, a loudness and a set of playing layers per 4-bar section; tempo = the NMED-T
  song's BPM.
* :mod:`.features` — four feature families at the EEG rate: spectral flux (onsets), loudness (dB RMS),
  pitch height (the score's melody), density (flux smoothed over 1 s).
* :mod:`.head` — electrode positions (GSN-HydroCel-129) and a dipole lead field (infinite homogeneous medium).
* :mod:`.response` — per subject, 3 phase-locked dipoles anywhere in the upper head, each following 1–3
  families with its own sign and lag (flux: biphasic 60–180 ms; loudness 120–400 ms; pitch 200–500 ms),
  plus an induced response: the subject's alpha rhythm (8.5–11.5 Hz, posterior dipole) amplitude-modulated
  by density (300–700 ms), mostly desynchronising.
* :mod:`.noise` — 1/f^β background from 24 dipoles, sensor noise, unmodulated alpha, eye blinks, slow drift,
  then the release's 0.3 Hz zero-phase high-pass (on the music-driven signal too; ``highpass_hz=None`` skips
  it), then a residual 60 Hz; per-recording channel gains and DC offsets (a signature per recording).
* :mod:`.snr` — the SNR: per-channel music-driven / noise power (as written), averaged over the responding
  channels (music power >= 25 % of the maximum), in dB; set exactly per recording.
* :mod:`.config` — settings, checks, and the seed streams (noise does not depend on ``snr_db`` or
  ``music``; ``music=False`` writes the same recordings without the music-driven part).
"""
from __future__ import annotations

from .config import AUDIO_SR, SFREQ, DipoleConfig
from .snr import measure_snr_db, responding
from .writer import TRUTH_FILE, write_dipole_set

__all__ = ["DipoleConfig", "AUDIO_SR", "SFREQ", "TRUTH_FILE", "measure_snr_db", "responding", "write_dipole_set"]

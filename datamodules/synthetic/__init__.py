"""NMED-format demo data: synthetic songs and synthetic EEG that weakly follows them.

:func:`write_demo` writes a small data set **in the real release layout** (NMED-T:
``songNN_Imputed.mat`` with ``dataNN``/``subsNN``/``fs``; NMED-H: ``CleanEEG_aggregatedByStimulus_<cond>.zip``
with ``songNN_<a|b>_Imputed.mat`` members) plus the stimulus audio as ``stimuli/songNN.wav``, so the demo
goes through exactly the readers real data go through (:func:`datamodules.nmed.read_recordings`). It is
generated on demand (deterministic for a seed) and never committed. :class:`DemoGenerator` computes
the same arrays in memory (the tests compare them with what the reader returns).

Design (nothing here is tuned to make one model win; the numbers are chosen from physiology-flavoured
ranges and the measured SNR is reported below):

**Music** (:func:`synth_song`). One synthetic song per row of :data:`datamodules.songs.SONGS`, so song
``i`` sounds the same in every layout and for every seed (the dataset seed drives the EEG only). Each
song has its own tempo (the table's BPM; fixed stand-ins for the four NMED-H songs), key and mode, a
4-chord progression, timbres (harmonic profiles, attack/decay of melody, bass and pad) and drum sounds.
It is built from 8-bar sections drawn from four song-specific arrangements (drums on/off, kick pattern,
hi-hat density, melody rate and register, bass rate, level) and a random-walk melody, so envelope,
onsets and spectral shape change within a song as well as between songs. NMED-H ``rev`` stimuli are
the time-reversed audio of the base song (``phase``/``meas`` are not synthesised). Audio is written
at ``audio_sr`` (16 kHz), mono, ``audio_margin_s`` (2 s) longer than the EEG; audio sample 0 is EEG
sample 0.

**Music features** (:func:`audio_features`) at the EEG rate: log broadband energy (envelope), spectral
flux (onset strength), four band log-energies (<250 Hz, 250-1000, 1000-4000, >4000) and the spectral
centroid, each z-scored over the stimulus.

**Response** (fixed per dataset seed by :class:`ResponseMap`; per subject only a modest perturbation:
gains ×lognormal(σ=0.2), feature weights ×(1+0.2·N), lags ±10 ms; identical in hearings a and b):

* *phase-locked* on ``phase_locked_fraction`` (50 %) of the electrodes, chosen at random (so it is
  distributed, not a focal source): each sees its own non-negative mix of the features (envelope and
  onsets weighted most) with a **random overall sign**, delayed by its own lag (50-250 ms) and shaped by
  its own causal kernel (gamma smoothing, τ 15-60 ms, with an optional later opposite-sign lobe). Signs
  are independent across electrodes, so averaging neighbours cancels much of it.
* *induced* on ``induced_fraction`` (30 %) of the electrodes (drawn independently): an ongoing alpha
  (8-12 Hz), beta (15-25 Hz) or gamma (30-45 Hz) rhythm — narrow-band noise that is part of the
  background whether or not music plays — has its amplitude multiplied by
  ``exp(depth·m(t))`` (normalised to unit mean square), ``m`` a lagged (100-300 ms), slowly smoothed
  (τ 100-300 ms) signed feature mix. Average band power is unchanged; its time course follows the music,
  invisible to a linear map of the raw waveform (the carrier's phase is random).

The response of a recording is ``gain ⊙ (phase_locked + carrier·(a(t) − 1))`` (``gain`` = the
recording's electrode gains, below); with ``music_response=False`` it is zero and everything else is
bit-for-bit the same (all noise comes from seed streams that do not depend on it), so a no-music control
differs from the real demo only by the music.

**SNR.** Per phase-locked electrode the response rms is ``response_gain · 20 µV · 10^(snr/20)`` with
``snr`` uniform in −22…−12 dB per electrode (20 µV is the nominal background level); the induced
modulation depth is uniform in 0.2-0.4 times ``response_gain`` on a carrier of 3-6 µV rms. Measured on
the default demo (``response_gain=1``), response power relative to everything else on the same
electrode is about −16 dB (median; 10th-90th percentile about −20…−11 dB) on phase-locked
electrodes and about −24 dB broadband on induced-only electrodes (within the carrier's band the
modulation is much larger than that: the band-power envelope of such an electrode correlates about
0.3 with the true modulation over 60 s, the raw waveform of a phase-locked electrode about 0.15 with
its true response). ``response_gain=2`` is +6 dB. These figures are checked by the tests.

**Noise** (µV; totals of a few tens of µV per channel), laid out per session with a signature per
recording:

* per session (subject): pink (1/f) background mixed from 16 spatially smooth latent sources (their
  scalp positions, widths and strengths are the subject's) plus independent pink noise per channel;
  posterior alpha (subject's peak 9-11 Hz and topography) in bursts; blink topography over the
  frontal/eye electrodes; a residual line-noise topography; per-channel sensor noise levels; one
  persistently noisy channel.
* per recording: fresh noise, latent-source strengths jittered (±15 %), its own blinks (Poisson at the
  subject's 12-20/min), alpha bursts and residual slow drift (0.05-0.5 Hz: a common component plus 8
  sources mixed at random), electrode gains (×lognormal σ=0.1, global ×lognormal σ=0.08), line residual
  amplitude/phase, 0-3 extra high-variance channels and, in 20 % of recordings, a flat channel.
  Electrode gains scale everything the electrode records, the music response included.
* line noise: 60 Hz lies *below* the 62.5 Hz Nyquist frequency at 125 Hz, but the release was notch
  filtered (59-61 Hz) and low-passed at 50 Hz before downsampling, so only a small residual (0.1-0.5 µV)
  is added. All other brain-like noise is band-limited to 0.3-50 Hz like the release.

These recording fingerprints are deliberate: each subject × song is one recording, so a model can name
the song from the noise alone under a random window split; the no-music control measures that leak.

**Layout details.** Subject ids are 1..n_subjects; their order in ``subsNN`` is shuffled per file (the
real files' order must not be assumed either). NMED-H: each subject hears each of the 4 songs once, in
one of the written conditions (Latin square), in both hearings (a, b: same response, fresh noise).
Values are float32 µV (what the reader returns); ``chanmusic_demo.json`` records the settings
(:meth:`DemoGenerator.from_manifest`). The default demo (4 subjects × 10 songs × 120 s, ≈ 330 MB)
takes about 12 s of CPU time (about 7-8 s wall on 2 idle cores; numpy work is spread over threads).

**Modules.** :mod:`.music` (songs), :mod:`.features` (music features), :mod:`.noise` (noise model and session
layout), :mod:`.response` (response map and kernels), :mod:`.seeds` (seed streams), :mod:`.generator`
(:class:`DemoGenerator`, :class:`RecordingParts`), :mod:`.writer` (:func:`write_demo`, the release layout).
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

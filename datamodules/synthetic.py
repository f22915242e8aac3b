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
"""
from __future__ import annotations

import io
import json
import math
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .nmed import NMED_CH_NAMES, NMED_N_CHANNELS, NMEDH_CONDITION_NAMES, normalize_dataset
from .songs import NMEDH_CONDITIONS, SONGS, song_of

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

FEATURE_NAMES: tuple[str, ...] = (
    "envelope", "onset", "band_0_250", "band_250_1k", "band_1k_4k", "band_4k_up", "centroid",
)
_FEATURE_EMPHASIS = np.array([1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5])
NOMINAL_NOISE_UV = 20.0
_NMEDH_BPM = {10: 104.0, 11: 118.0, 12: 86.0, 13: 132.0}  # stand-ins: the table has no NMED-H tempi
_MODES = {
    "major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10), "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}
_MODE_NAMES = tuple(_MODES)
_BANDS = {"alpha": (8.0, 12.0), "beta": (15.0, 25.0), "gamma": (30.0, 45.0)}
_DATASET_CODE = {"nmed-t": 1, "nmed-h": 2}
# seed-stream tags (so every component has its own independent, reproducible stream)
_MUSIC, _MAP, _MAP_SUBJ, _SESSION, _REC, _ORDER = 101, 202, 303, 404, 505, 606


# =========================================================================================== music
def song_bpm(song: int) -> float:
    """Tempo of synthetic song ``song`` (the table's BPM, fixed stand-ins for NMED-H)."""
    bpm = SONGS[song].bpm
    return float(bpm if bpm is not None else _NMEDH_BPM[song])


def _midi_hz(m: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=np.float64) - 69.0) / 12.0)


def _voice(n: int, sr: int, onsets, freqs, durs, vels, harmonics, attack: float, decay: float
           ) -> np.ndarray:
    """A monophonic voice: notes (onset/duration in samples) with a harmonic timbre and an envelope."""
    out = np.zeros(n, dtype=np.float32)
    onsets = np.asarray(onsets, dtype=np.int64)
    if onsets.size == 0:
        return out
    order = np.argsort(onsets, kind="stable")
    onsets, freqs = onsets[order], np.asarray(freqs, dtype=np.float64)[order]
    durs, vels = np.asarray(durs, dtype=np.float64)[order], np.asarray(vels, dtype=np.float64)[order]
    keep = (onsets >= 0) & (onsets < n)
    onsets, freqs, durs, vels = onsets[keep], freqs[keep], durs[keep], vels[keep]
    if onsets.size == 0:
        return out
    first = int(onsets[0])
    seg = np.diff(np.append(onsets, n))                    # samples from each onset to the next

    def per_sample(v, dtype=np.float32):                    # a per-note value held until the next onset
        return np.repeat(np.asarray(v, dtype=dtype), seg)

    t = (np.arange(n - first, dtype=np.float32) - per_sample(onsets - first)) / np.float32(sr)
    env = (1.0 - np.exp(t * np.float32(-1.0 / attack))) * np.exp(t * np.float32(-1.0 / decay))
    env *= np.clip((per_sample(durs / sr) - t) * np.float32(1 / 0.012), 0.0, 1.0)
    env *= per_sample(vels)
    # phase: continuous across notes; each note's start phase in float64, its local ramp in float32
    w = 2.0 * np.pi * freqs                                 # rad/s
    start = np.mod(np.concatenate([[0.0], np.cumsum(w[:-1] * seg[:-1] / sr)]), 2.0 * np.pi)
    phase = per_sample(start) + per_sample(w) * t
    # harmonics by the Chebyshev recurrence sin((k+1)x) = 2cos(x) sin(kx) - sin((k-1)x)
    two_cos = 2.0 * np.cos(phase)
    s_prev, s_cur = np.zeros_like(phase), np.sin(phase)
    acc = np.zeros_like(phase)
    for k, h in enumerate(harmonics, start=1):
        below = k * freqs < 0.45 * sr
        if below.all():
            acc += np.float32(h) * s_cur
        elif below.any():
            acc += np.float32(h) * s_cur * per_sample(below)
        else:
            break
        s_prev, s_cur = s_cur, two_cos * s_cur - s_prev
    out[first:] = acc * env
    return out


def _drum_sounds(rng: np.random.Generator, sr: int) -> dict[str, np.ndarray]:
    t = np.arange(int(0.35 * sr)) / sr
    k_hi, k_lo, k_dec = rng.uniform(100, 160), rng.uniform(40, 60), rng.uniform(0.12, 0.3)
    kf = k_lo + (k_hi - k_lo) * np.exp(-t / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(kf) / sr) * np.exp(-t / k_dec)
    s_dec, s_tone = rng.uniform(0.06, 0.16), rng.uniform(160, 240)
    noise = rng.standard_normal(t.size)
    snare = (0.7 * np.diff(noise, prepend=0.0) / 2 + 0.5 * np.sin(2 * np.pi * s_tone * t)) * np.exp(-t / s_dec)
    h_dec = rng.uniform(0.015, 0.05)
    hat_noise = np.diff(rng.standard_normal(t.size + 2), n=2) / 4
    hat = hat_noise * np.exp(-t / h_dec)
    return {"kick": kick.astype(np.float32), "snare": snare.astype(np.float32), "hat": hat.astype(np.float32)}


def _arrangements(rng: np.random.Generator) -> list[dict]:
    """Four section types; the last is a sparse intro/breakdown."""
    types = []
    for i in range(4):
        breakdown = i == 3
        kick = np.zeros(16, bool)
        kick[[0, 8]] = True
        kick |= rng.random(16) < 0.12
        snare = np.zeros(16, bool)
        snare[[4, 12]] = True
        snare |= rng.random(16) < 0.05
        types.append({
            "drums": (not breakdown) and rng.random() < 0.9,
            "kick": kick, "snare": snare,
            "hat_every": int(rng.choice([1, 2, 2, 4])) if rng.random() < 0.85 else 0,
            "mel_rate": int(rng.choice([1, 2] if breakdown else [1, 2, 2, 4])),
            "mel_rest": float(rng.uniform(0.05, 0.4)),
            "mel_octave": int(rng.random() < 0.35),
            "bass_rate": 0 if breakdown and rng.random() < 0.5 else int(rng.choice([1, 2])),
            "pad": breakdown or rng.random() < 0.6,
            "level": float(rng.uniform(0.5, 0.75) if breakdown else rng.uniform(0.7, 1.0)),
        })
    return types


def synth_song(song: int, duration_s: float, sr: int = 16000) -> np.ndarray:
    """Synthetic song ``song`` (global index), mono float32 at ``sr``; depends on ``song`` only."""
    rng = np.random.default_rng([_MUSIC, int(song)])
    n = int(round(duration_s * sr))
    bpm = song_bpm(song)
    sixteenth = 60.0 / bpm / 4.0
    n_steps = int(math.ceil(duration_s / sixteenth)) + 16
    n_bars = n_steps // 16 + 1

    tonic = 40 + (7 * song) % 12                          # distinct key per song (mod 12)
    mode = _MODES[_MODE_NAMES[(song + song // 12) % len(_MODE_NAMES)]]
    scale = np.array(mode)
    prog = [0] + list(rng.choice([1, 2, 3, 4, 5], size=3))   # chord roots as scale degrees
    n_mel_h = 8
    mel_h = rng.uniform(0.2, 1.0, n_mel_h) * np.arange(1, n_mel_h + 1) ** -rng.uniform(0.6, 1.8)
    if rng.random() < 0.5:                               # hollow (odd-heavy) timbre
        mel_h[1::2] *= rng.uniform(0.1, 0.4)
    mel_h /= mel_h.sum()
    bass_h = np.arange(1, 5) ** -rng.uniform(0.8, 2.0)
    bass_h /= bass_h.sum()
    pad_h = np.arange(1, 4) ** -rng.uniform(1.0, 2.5)
    pad_h /= pad_h.sum()
    mel_att, mel_dec = rng.uniform(0.003, 0.03), rng.uniform(0.15, 0.8)
    legato = rng.uniform(0.55, 0.95)
    drums = _drum_sounds(rng, sr)
    arr = _arrangements(rng)
    n_sections = n_bars // 8 + 1
    seq = [3]
    for _ in range(n_sections - 1):
        seq.append(int(rng.choice([j for j in range(3) if j != seq[-1]])))

    def degree_midi(deg: int) -> float:
        return float(scale[deg % 7] + 12 * (deg // 7))

    mel, bass, pads = [], [], [[], [], []]
    hits: list[tuple[str, int, float]] = []
    deg = 7
    for bar in range(n_bars):
        a = arr[seq[bar // 8]]
        lvl = a["level"]
        chord = int(prog[bar % 4])
        bar_start = bar * 16
        for step in range(16):
            s = bar_start + step
            onset = int(round(s * sixteenth * sr))
            if onset >= n:
                break
            if a["drums"]:
                if a["kick"][step]:
                    hits.append(("kick", onset, 0.9 * lvl * rng.uniform(0.85, 1.0)))
                if a["snare"][step]:
                    hits.append(("snare", onset, 0.55 * lvl * rng.uniform(0.8, 1.0)))
            if a["hat_every"] and step % a["hat_every"] == 0:
                hits.append(("hat", onset, 0.25 * lvl * (1.0 if step % 4 == 0 else 0.6)))
            mel_step = 4 // a["mel_rate"]
            if step % mel_step == 0 and rng.random() > a["mel_rest"]:
                if step == 0:
                    deg = chord + int(rng.choice([0, 2, 4])) + 7 * int(deg >= 10)
                else:
                    deg = int(np.clip(deg + rng.choice([-2, -1, -1, 0, 1, 1, 2]), 0, 13))
                mel.append((onset, tonic + 24 + 12 * a["mel_octave"] + degree_midi(deg),
                            mel_step * sixteenth * sr * legato, lvl * rng.uniform(0.7, 1.0) * (1.15 if step % 4 == 0 else 1.0)))
            if a["bass_rate"] and step % (4 // a["bass_rate"]) == 0:
                bdeg = chord + (4 if (a["bass_rate"] == 2 and step % 8 == 6) else 0)
                bass.append((onset, tonic + degree_midi(bdeg), (4 // a["bass_rate"]) * sixteenth * sr * 0.9,
                             lvl * (1.0 if step % 4 == 0 else 0.75)))
        if a["pad"]:
            onset = int(round(bar_start * sixteenth * sr))
            if onset < n:
                for v, off in enumerate((0, 2, 4)):
                    pads[v].append((onset, tonic + 12 + degree_midi(chord + off), 16 * sixteenth * sr, lvl))

    def notes(lst):
        if not lst:
            return [], [], [], []
        o, f, d, v = zip(*lst)
        return list(o), _midi_hz(np.array(f)), list(d), list(v)

    out = np.zeros(n, dtype=np.float32)
    o, f, d, v = notes(mel)
    out += 0.30 * _voice(n, sr, o, f, d, v, mel_h, mel_att, mel_dec)
    o, f, d, v = notes(bass)
    out += 0.45 * _voice(n, sr, o, f, d, v, bass_h, 0.005, rng.uniform(0.2, 0.6))
    for pv in pads:
        o, f, d, v = notes(pv)
        out += 0.10 * _voice(n, sr, o, f, d, v, pad_h, 0.08, 3.0)
    for name, onset, vel in hits:
        snd = drums[name]
        m = min(snd.size, n - onset)
        out[onset:onset + m] += np.float32(vel) * snd[:m]
    peak = float(np.abs(out).max())
    if peak > 0:
        out *= np.float32(0.9 / peak)
    return out


# ====================================================================================== features
def audio_features(audio: np.ndarray, sr: int, sfreq: float, n_samples: int) -> np.ndarray:
    """Music features ``[len(FEATURE_NAMES), n_samples]`` at the EEG rate (frame k centred on k/sfreq).

    Each row is z-scored over the stimulus. Audio shorter than ``n_samples / sfreq`` is zero-padded
    (callers make the audio cover the EEG).
    """
    audio = np.asarray(audio, dtype=np.float32)
    n_fft = 1 << int(round(math.log2(0.032 * sr)))
    half = n_fft // 2
    centres = np.round(np.arange(n_samples) * (sr / sfreq)).astype(np.int64)
    need = int(centres[-1]) + n_fft + 1
    padded = np.zeros(max(need, audio.size + 2 * half), dtype=np.float32)
    padded[half:half + audio.size] = audio
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[centres]
    spec = np.abs(np.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=1)) ** 2
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    eps = 1e-10
    feats = np.empty((len(FEATURE_NAMES), n_samples))
    total = spec.sum(axis=1)
    feats[0] = np.log(total + eps)
    logmag = np.log1p(100.0 * np.sqrt(spec))
    flux = np.maximum(np.diff(logmag, axis=0), 0.0).sum(axis=1)
    feats[1] = np.concatenate([[0.0], flux])
    edges = [0.0, 250.0, 1000.0, 4000.0, sr / 2 + 1]
    for b in range(4):
        sel = (freqs >= edges[b]) & (freqs < edges[b + 1])
        feats[2 + b] = np.log(spec[:, sel].sum(axis=1) + eps)
    feats[6] = (spec * freqs).sum(axis=1) / (total + eps)
    feats -= feats.mean(axis=1, keepdims=True)
    sd = feats.std(axis=1, keepdims=True)
    return feats / np.where(sd > 0, sd, 1.0)


# ============================================================================= montage geometry
@lru_cache(maxsize=1)
def _positions() -> np.ndarray:
    """Electrode positions [125, 3] (m; +x right, +y nose, +z up) from the HydroCel-129 montage."""
    import mne

    pos = mne.channels.make_standard_montage("GSN-HydroCel-129").get_positions()["ch_pos"]
    return np.array([pos[name] for name in NMED_CH_NAMES], dtype=np.float64)


def _gauss_topo(pos: np.ndarray, centre: np.ndarray, width: float) -> np.ndarray:
    d2 = ((pos - centre) ** 2).sum(axis=1)
    return np.exp(-d2 / (2.0 * width ** 2))


def _shaped_noise(rng: np.random.Generator, rows: int, n: int, sfreq: float, shape) -> np.ndarray:
    """Gaussian noise [rows, n] with amplitude spectrum ``shape(f)``, each row scaled to unit rms.

    Drawn directly in the frequency domain (random complex coefficients on the bins where ``shape`` is
    not negligible), which is cheap for narrow bands.
    """
    import scipy.fft

    amp = np.asarray(shape(np.fft.rfftfreq(n, 1.0 / sfreq)), dtype=np.float64)
    keep = np.flatnonzero(amp > 1e-4 * amp.max())
    spec = np.zeros((rows, amp.size), dtype=np.complex64)
    coef = rng.standard_normal((rows, keep.size, 2), dtype=np.float32)
    spec[:, keep] = (coef[..., 0] + 1j * coef[..., 1]) * amp[keep].astype(np.float32)
    x = scipy.fft.irfft(spec, n=n, axis=1)
    rms = np.sqrt((x.astype(np.float64) ** 2).mean(axis=1, keepdims=True))
    return x / np.where(rms > 0, rms, 1.0).astype(np.float32)


def _release_band(f: np.ndarray) -> np.ndarray:
    """Amplitude response of the release's 0.3 Hz high-pass and 50 Hz low-pass."""
    hp = (f / 0.3) ** 4 / (1.0 + (f / 0.3) ** 4)
    lp = 1.0 / np.sqrt(1.0 + (f / 50.0) ** 16)
    return hp * lp


def _pink(f: np.ndarray) -> np.ndarray:
    return _release_band(f) / np.sqrt(np.maximum(f, 0.3))


def _band(lo: float, hi: float):
    def shape(f):
        c, w = (lo + hi) / 2, (hi - lo) / 2
        return np.exp(-0.5 * ((f - c) / (0.5 * w)) ** 2)
    return shape


# ============================================================================== response model
def _kernel(sfreq: float, lag_s: float, tau_s: float, rebound: float) -> np.ndarray:
    """Causal response kernel: delay, gamma(2) smoothing, optional later opposite-sign lobe."""
    t = np.arange(int(math.ceil((lag_s + 12 * tau_s) * sfreq)) + 1) / sfreq - lag_s
    tt = np.clip(t, 0.0, None)
    g1 = (tt / tau_s) * np.exp(-tt / tau_s) * (t >= 0)
    t2 = 2.5 * tau_s
    g2 = (tt / t2) * np.exp(-tt / t2) * (t >= 0)
    k = g1 / g1.sum() - rebound * g2 / g2.sum()
    return k


@dataclass(frozen=True)
class ResponseMap:
    """Which electrodes respond and how; fixed per dataset seed (see the module docstring)."""

    pl_channels: np.ndarray      # [P] electrode rows with a phase-locked response
    pl_weights: np.ndarray       # [P, F] signed feature mix
    pl_lag_s: np.ndarray         # [P]
    pl_tau_s: np.ndarray         # [P]
    pl_rebound: np.ndarray       # [P]
    pl_amp_uv: np.ndarray        # [P] response rms at response_gain=1
    ind_channels: np.ndarray     # [I] electrode rows with an induced response
    ind_band: tuple[str, ...]    # [I] alpha | beta | gamma
    ind_weights: np.ndarray      # [I, F]
    ind_lag_s: np.ndarray        # [I]
    ind_tau_s: np.ndarray        # [I]
    ind_depth: np.ndarray        # [I] modulation depth at response_gain=1
    ind_carrier_uv: np.ndarray   # [I] rms of the ongoing rhythm (present with or without music)

    @classmethod
    def draw(cls, seed: int, phase_locked_fraction: float = 0.5, induced_fraction: float = 0.3
             ) -> "ResponseMap":
        rng = np.random.default_rng([_MAP, int(seed)])
        n_f = len(FEATURE_NAMES)

        def mix(k):
            w = np.abs(rng.standard_normal((k, n_f))) * _FEATURE_EMPHASIS
            w /= w.sum(axis=1, keepdims=True)
            return w * rng.choice([-1.0, 1.0], size=(k, 1))

        p = int(round(phase_locked_fraction * NMED_N_CHANNELS))
        i = int(round(induced_fraction * NMED_N_CHANNELS))
        pl = np.sort(rng.choice(NMED_N_CHANNELS, size=p, replace=False))
        pl_w = mix(p)
        pl_lag = rng.uniform(0.05, 0.25, p)
        pl_tau = rng.uniform(0.015, 0.06, p)
        pl_reb = rng.uniform(0.0, 0.7, p) * (rng.random(p) < 0.6)
        pl_amp = NOMINAL_NOISE_UV * 10 ** (rng.uniform(-22.0, -12.0, p) / 20.0)
        ind = np.sort(rng.choice(NMED_N_CHANNELS, size=i, replace=False))
        bands = tuple(str(b) for b in rng.choice(list(_BANDS), size=i, p=[0.4, 0.35, 0.25]))
        return cls(
            pl, pl_w, pl_lag, pl_tau, pl_reb, pl_amp,
            ind, bands, mix(i), rng.uniform(0.1, 0.3, i), rng.uniform(0.1, 0.3, i),
            rng.uniform(0.2, 0.4, i), rng.uniform(3.0, 6.0, i),
        )

    def for_subject(self, seed: int, subject: int) -> "ResponseMap":
        """The map with a modest per-subject perturbation (gains, weights, lags)."""
        rng = np.random.default_rng([_MAP_SUBJ, int(seed), int(subject)])
        p, i = len(self.pl_channels), len(self.ind_channels)
        return ResponseMap(
            self.pl_channels,
            self.pl_weights * (1.0 + 0.2 * rng.standard_normal(self.pl_weights.shape)),
            np.clip(self.pl_lag_s + rng.uniform(-0.01, 0.01, p), 0.04, 0.26),
            self.pl_tau_s, self.pl_rebound,
            self.pl_amp_uv * rng.lognormal(0.0, 0.2, p),
            self.ind_channels, self.ind_band,
            self.ind_weights * (1.0 + 0.2 * rng.standard_normal(self.ind_weights.shape)),
            np.clip(self.ind_lag_s + rng.uniform(-0.01, 0.01, i), 0.05, 0.35),
            self.ind_tau_s,
            self.ind_depth * rng.lognormal(0.0, 0.2, i),
            self.ind_carrier_uv * rng.lognormal(0.0, 0.2, i),
        )


def _causal_filter(x: np.ndarray, kernels: list[np.ndarray]) -> np.ndarray:
    from scipy.signal import fftconvolve

    n = x.shape[1]
    length = max(k.size for k in kernels)
    kk = np.zeros((len(kernels), length))
    for r, k in enumerate(kernels):
        kk[r, :k.size] = k
    return fftconvolve(x, kk, mode="full", axes=1)[:, :n]


def _zscore_rows(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    sd = x.std(axis=1, keepdims=True)
    return x / np.where(sd > 0, sd, 1.0)


# ============================================================================== the generator
@dataclass
class RecordingParts:
    """The additive parts of one synthetic recording (float64, µV, [125, T])."""

    noise: np.ndarray     # everything that is there without music
    response: np.ndarray  # the music-driven part (zero when music_response=False)

    def eeg(self) -> np.ndarray:
        """The values written to the file (float32)."""
        return (self.noise + self.response).astype(np.float32)


@dataclass
class _Session:
    mixing: np.ndarray          # [125, L] latent pink sources -> channels (µV)
    indep_uv: np.ndarray        # [125]
    alpha_hz: float
    alpha_topo: np.ndarray      # [125] µV at burst peak
    blink_topo: np.ndarray      # [125] µV per blink
    blink_rate_hz: float
    line_topo: np.ndarray       # [125]
    sensor_uv: np.ndarray       # [125]
    noisy_channel: int


class DemoGenerator:
    """Computes the demo's audio, features and EEG in memory; :func:`write_demo` writes them."""

    def __init__(
        self,
        seed: int = 0,
        dataset: str = "nmed-t",
        n_subjects: int = 4,
        duration_s: float = 120.0,
        sfreq: float = 125.0,
        audio_sr: int = 16000,
        music_response: bool = True,
        response_gain: float = 1.0,
        conditions: Sequence[str] = ("orig", "rev"),
        songs: Iterable[int] | None = None,
        phase_locked_fraction: float = 0.5,
        induced_fraction: float = 0.3,
        audio_margin_s: float = 2.0,
    ):
        self.seed = int(seed)
        self.dataset = normalize_dataset(dataset)
        if n_subjects < 1:
            raise ValueError("n_subjects must be >= 1")
        if duration_s <= 0 or sfreq <= 0 or audio_sr <= 0:
            raise ValueError("duration_s, sfreq and audio_sr must be positive")
        self.n_subjects = int(n_subjects)
        self.duration_s = float(duration_s)
        self.sfreq = float(sfreq)
        self.audio_sr = int(audio_sr)
        self.music_response = bool(music_response)
        self.response_gain = float(response_gain)
        self.audio_margin_s = float(audio_margin_s)
        self.n_samples = int(round(self.duration_s * self.sfreq))
        self.subjects = list(range(1, self.n_subjects + 1))
        all_songs = [s.index for s in SONGS if s.dataset == self.dataset]
        self.songs = all_songs if songs is None else sorted({int(s) for s in songs})
        bad = [s for s in self.songs if s not in all_songs]
        if bad or not self.songs:
            raise ValueError(f"songs {bad or '[]'} are not {self.dataset} songs ({all_songs})")
        if self.dataset == "nmed-h":
            conditions = [conditions] if isinstance(conditions, str) else list(conditions)
            unsupported = [c for c in conditions if c not in ("orig", "rev")]
            if unsupported or not conditions:
                raise ValueError(
                    f"the demo synthesises NMED-H conditions 'orig' and 'rev' only (got {conditions})"
                )
            self.conditions = [c for c in NMEDH_CONDITION_NAMES if c in conditions]
        else:
            self.conditions = ["orig"]
        self.phase_locked_fraction = float(phase_locked_fraction)
        self.induced_fraction = float(induced_fraction)
        self.map = ResponseMap.draw(self.seed, phase_locked_fraction, induced_fraction)
        self._audio: dict[int, np.ndarray] = {}
        self._feats: dict[int, np.ndarray] = {}

    @classmethod
    def from_manifest(cls, root: str | Path) -> "DemoGenerator":
        """The generator that wrote the demo under ``root`` (from its ``chanmusic_demo.json``)."""
        m = json.loads((Path(root) / "chanmusic_demo.json").read_text())
        return cls(
            seed=m["seed"], dataset=m["dataset"], n_subjects=len(m["subjects"]), duration_s=m["duration_s"],
            sfreq=m["sfreq"], audio_sr=m["audio_sr"], music_response=m["music_response"],
            response_gain=m["response_gain"], conditions=m["conditions"], songs=m["songs"],
            phase_locked_fraction=m["phase_locked_fraction"], induced_fraction=m["induced_fraction"],
            audio_margin_s=m["audio_margin_s"],
        )

    # ------------------------------------------------------------------ layout
    def stimulus_number(self, song: int, condition: str = "orig") -> int:
        base = SONGS[song].number
        return base if self.dataset == "nmed-t" else NMEDH_CONDITIONS[condition] + base - 21

    @property
    def stimuli(self) -> list[int]:
        return sorted(self.stimulus_number(s, c) for s in self.songs for c in self.conditions)

    @property
    def hearings(self) -> list[str]:
        return ["a"] if self.dataset == "nmed-t" else ["a", "b"]

    def listeners(self, stimulus: int) -> list[int]:
        """Subject ids who heard ``stimulus``, in the order written to ``subsNN`` (shuffled per file)."""
        if self.dataset == "nmed-t":
            ids = list(self.subjects)
        else:
            song = song_of("nmed-h", stimulus).index
            k = SONGS[song].number - 21
            cond = [c for c, first in NMEDH_CONDITIONS.items() if first <= stimulus < first + 4][0]
            nc = len(self.conditions)
            ids = [s for i, s in enumerate(self.subjects) if self.conditions[(i + k) % nc] == cond]
        rng = np.random.default_rng([_ORDER, self.seed, _DATASET_CODE[self.dataset], stimulus])
        return [ids[j] for j in rng.permutation(len(ids))]

    # ------------------------------------------------------------------ audio
    def audio(self, stimulus: int) -> np.ndarray:
        """The audio of ``stimulus`` as written to ``stimuli/songNN.wav`` (float32, ``audio_sr``)."""
        if stimulus not in self._audio:
            song = song_of(self.dataset, stimulus).index
            base = synth_song(song, self.duration_s + self.audio_margin_s, self.audio_sr)
            cond = "orig" if self.dataset == "nmed-t" else next(
                c for c, first in NMEDH_CONDITIONS.items() if first <= stimulus < first + 4)
            self._audio[stimulus] = np.ascontiguousarray(base[::-1]) if cond == "rev" else base
        return self._audio[stimulus]

    def features(self, stimulus: int) -> np.ndarray:
        """Music features of ``stimulus`` at the EEG rate, ``[F, T]`` (see :func:`audio_features`)."""
        if stimulus not in self._feats:
            self._feats[stimulus] = audio_features(self.audio(stimulus), self.audio_sr, self.sfreq,
                                                   self.n_samples)
        return self._feats[stimulus]

    # ------------------------------------------------------------------ EEG
    def session(self, subject: int) -> _Session:
        ss = np.random.SeedSequence([_SESSION, self.seed, _DATASET_CODE[self.dataset], int(subject)])
        r = [np.random.default_rng(s) for s in ss.spawn(8)]
        pos = _positions()
        n_lat = 16
        centres = pos[r[0].choice(NMED_N_CHANNELS, n_lat, replace=False)] + r[0].normal(0, 0.01, (n_lat, 3))
        widths = r[0].uniform(0.03, 0.06, n_lat)
        mixing = np.stack([_gauss_topo(pos, c, w) for c, w in zip(centres, widths)], axis=1)
        mixing *= r[0].lognormal(0.0, 0.3, n_lat)
        row = np.sqrt((mixing ** 2).sum(axis=1, keepdims=True))
        mixing = mixing / row * 14.0 * r[1].uniform(0.8, 1.2, (NMED_N_CHANNELS, 1))
        indep = 8.0 * r[1].uniform(0.7, 1.3, NMED_N_CHANNELS)
        alpha_c = np.array([0.0, -0.08, 0.03]) + r[2].normal(0, 0.012, 3)
        alpha_topo = r[2].uniform(8.0, 14.0) * _gauss_topo(pos, alpha_c, r[2].uniform(0.04, 0.06))
        eyes = np.array([[-0.03, 0.10, -0.04], [0.03, 0.10, -0.04]])
        blink_topo = r[3].uniform(80.0, 150.0) * np.maximum(
            _gauss_topo(pos, eyes[0], 0.035), _gauss_topo(pos, eyes[1], 0.035))
        line_c = pos[r[4].integers(NMED_N_CHANNELS)]
        line_topo = 0.4 + _gauss_topo(pos, line_c, 0.06)
        return _Session(
            mixing=mixing, indep_uv=indep, alpha_hz=float(r[2].uniform(9.0, 11.0)),
            alpha_topo=alpha_topo, blink_topo=blink_topo, blink_rate_hz=float(r[3].uniform(12, 20)) / 60.0,
            line_topo=line_topo, sensor_uv=r[5].uniform(1.0, 2.0, NMED_N_CHANNELS),
            noisy_channel=int(r[6].integers(NMED_N_CHANNELS)),
        )

    def parts(self, subject: int, stimulus: int, hearing: str = "a", music_response: bool | None = None
              ) -> RecordingParts:
        """Noise and music response of one recording (µV, float64, ``[125, T]``)."""
        music = self.music_response if music_response is None else bool(music_response)
        n, fs, C = self.n_samples, self.sfreq, NMED_N_CHANNELS
        sess = self.session(subject)
        smap = self.map.for_subject(self.seed, subject)
        ss = np.random.SeedSequence([_REC, self.seed, _DATASET_CODE[self.dataset], int(subject),
                                     int(stimulus), "ab".index(hearing)])
        r = [np.random.default_rng(s) for s in ss.spawn(12)]

        # --- brain-like background
        n_lat = sess.mixing.shape[1]
        latent = _shaped_noise(r[0], n_lat, n, fs, _pink) * r[0].lognormal(0.0, 0.15, (n_lat, 1))
        brain = sess.mixing @ latent
        brain += sess.indep_uv[:, None] * _shaped_noise(r[1], C, n, fs, _pink)
        alpha = _shaped_noise(r[2], 1, n, fs, _band(sess.alpha_hz - 1.0, sess.alpha_hz + 1.0))[0]
        burst = _shaped_noise(r[2], 1, n, fs, lambda f: np.exp(-0.5 * (f / 0.4) ** 2))[0]
        burst = np.maximum(burst - 0.3, 0.0) * 1.6
        brain += sess.alpha_topo[:, None] * (alpha * burst)[None, :]
        drift = _shaped_noise(r[3], 9, n, fs,
                              lambda f: (f > 0.04) / np.maximum(f, 0.05) * np.exp(-0.5 * (f / 0.5) ** 2))
        drift_mix = np.concatenate([np.full((C, 1), r[3].uniform(2.0, 6.0)),  # common + 8 random sources
                                    r[3].uniform(0.5, 3.0, (C, 1)) * r[3].dirichlet(np.ones(8), C) ** 0.5],
                                   axis=1)
        brain += drift_mix @ drift
        # ongoing rhythms whose amplitude the music modulates (present with or without music)
        carriers = np.zeros((len(smap.ind_channels), n))
        for j, band in enumerate(smap.ind_band):
            carriers[j] = smap.ind_carrier_uv[j] * _shaped_noise(r[4], 1, n, fs, _band(*_BANDS[band]))[0]
        brain[smap.ind_channels] += carriers

        # --- artifacts
        art = np.zeros((C, n))
        n_blinks = r[5].poisson(sess.blink_rate_hz * self.duration_s)
        width = int(round(0.4 * fs))
        shape = np.hanning(width) ** 2
        for t0, amp in zip(r[5].integers(0, max(1, n - width), n_blinks), r[5].uniform(0.6, 1.3, n_blinks)):
            art[:, t0:t0 + width] += sess.blink_topo[:, None] * (amp * shape)[None, :]
        t = np.arange(n) / fs
        line = r[6].uniform(0.1, 0.5) * np.sin(2 * np.pi * 60.0 * t + r[6].uniform(0, 2 * np.pi))
        line *= 1.0 + 0.3 * _shaped_noise(r[6], 1, n, fs, lambda f: np.exp(-0.5 * (f / 0.1) ** 2))[0]
        art += sess.line_topo[:, None] * line[None, :]

        # --- this recording's electrode gains and bad channels
        gain = r[7].lognormal(0.0, 0.1, C) * r[7].lognormal(0.0, 0.08)
        sensor = sess.sensor_uv[:, None] * r[8].standard_normal((C, n), dtype=np.float32)
        noisy = [sess.noisy_channel] + list(r[9].choice(C, size=min(3, r[9].poisson(0.8)), replace=False))
        for ch in noisy:
            sensor[ch] += r[9].uniform(15.0, 40.0) * _shaped_noise(r[9], 1, n, fs, _release_band)[0]
        flat = int(r[10].integers(C)) if r[10].random() < 0.2 else None
        if flat is not None:
            gain[flat] = 0.0
            sensor[flat] = 0.05 * r[10].standard_normal(n)

        noise = gain[:, None] * (brain + art) + sensor

        # --- music response
        response = np.zeros((C, n))
        if music and self.response_gain != 0.0:
            feats = self.features(stimulus)
            pl = _causal_filter(smap.pl_weights @ feats,
                                [_kernel(fs, lag, tau, reb) for lag, tau, reb in
                                 zip(smap.pl_lag_s, smap.pl_tau_s, smap.pl_rebound)])
            pl = _zscore_rows(pl) * (self.response_gain * smap.pl_amp_uv)[:, None]
            response[smap.pl_channels] += pl
            a = self._modulation(smap, feats)
            response[smap.ind_channels] += carriers * (a - 1.0)  # channels are unique
            response *= gain[:, None]
        return RecordingParts(noise=noise, response=response)

    def _modulation(self, smap: ResponseMap, feats: np.ndarray) -> np.ndarray:
        m = _zscore_rows(_causal_filter(smap.ind_weights @ feats,
                                        [_kernel(self.sfreq, lag, tau, 0.0) for lag, tau in
                                         zip(smap.ind_lag_s, smap.ind_tau_s)]))
        a = np.exp((self.response_gain * smap.ind_depth)[:, None] * m)
        return a / np.sqrt((a ** 2).mean(axis=1, keepdims=True))

    def induced_modulation(self, subject: int, stimulus: int) -> np.ndarray:
        """Amplitude factor ``a(t)`` ``[I, T]`` of the rhythms on ``map.ind_channels`` when music plays."""
        return self._modulation(self.map.for_subject(self.seed, subject), self.features(stimulus))

    def eeg(self, subject: int, stimulus: int, hearing: str = "a", music_response: bool | None = None
            ) -> np.ndarray:
        """float32 ``[125, T]`` µV exactly as written to (and read back from) the file."""
        return self.parts(subject, stimulus, hearing, music_response).eeg()

    # ------------------------------------------------------------------ writing
    def manifest(self) -> dict:
        return {
            "generator": "datamodules.synthetic.write_demo",
            "note": "synthetic demo data in the NMED release layout; not real EEG",
            "seed": self.seed, "dataset": self.dataset, "subjects": self.subjects,
            "songs": self.songs, "stimuli": self.stimuli, "conditions": self.conditions,
            "duration_s": self.duration_s, "sfreq": self.sfreq, "audio_sr": self.audio_sr,
            "audio_margin_s": self.audio_margin_s, "music_response": self.music_response,
            "response_gain": self.response_gain,
            "phase_locked_fraction": self.phase_locked_fraction,
            "induced_fraction": self.induced_fraction,
            "phase_locked_channels": [NMED_CH_NAMES[c] for c in self.map.pl_channels],
            "induced_channels": [NMED_CH_NAMES[c] for c in self.map.ind_channels],
        }

    def write(self, root: str | Path) -> Path:
        import scipy.io
        import soundfile as sf

        root = Path(root).expanduser()
        root.mkdir(parents=True, exist_ok=True)
        audio_dir = root / "stimuli"
        audio_dir.mkdir(exist_ok=True)
        workers = max(1, min(4, os.cpu_count() or 1))
        with ThreadPoolExecutor(workers) as pool:  # numpy releases the GIL; results do not depend on it
            list(pool.map(self.features, self.stimuli))  # fills the audio and feature caches
        for stim in self.stimuli:
            sf.write(str(audio_dir / f"song{stim}.wav"), self.audio(stim), self.audio_sr, subtype="PCM_16")

        zips: dict[str, zipfile.ZipFile] = {}
        try:
            if self.dataset == "nmed-h":
                for cond in self.conditions:
                    zips[cond] = zipfile.ZipFile(root / f"CleanEEG_aggregatedByStimulus_{cond}.zip", "w",
                                                 compression=zipfile.ZIP_STORED)
            for stim in self.stimuli:
                ids = self.listeners(stim)
                if not ids:
                    continue
                for hearing in self.hearings:
                    data = np.empty((NMED_N_CHANNELS, self.n_samples, len(ids)), dtype=np.float32)
                    with ThreadPoolExecutor(workers) as pool:
                        for j, x in enumerate(pool.map(lambda sid: self.eeg(sid, stim, hearing), ids)):
                            data[:, :, j] = x
                    suffix = "" if self.dataset == "nmed-t" else f"_{hearing}"
                    variables = {f"data{stim}{suffix}": data,
                                 f"subs{stim}{suffix}": np.array(ids, dtype=np.float64)[None, :],
                                 "fs": np.array([[self.sfreq]])}
                    if self.dataset == "nmed-t":
                        scipy.io.savemat(str(root / f"song{stim}_Imputed.mat"), variables, format="5")
                    else:
                        cond = next(c for c, first in NMEDH_CONDITIONS.items() if first <= stim < first + 4)
                        buf = io.BytesIO()
                        scipy.io.savemat(buf, variables, format="5")
                        zips[cond].writestr(
                            f"CleanEEG_aggregatedByStimulus_{cond}/song{stim}{suffix}_Imputed.mat",
                            buf.getvalue())
                    del data
        finally:
            for zf in zips.values():
                zf.close()
        (root / "chanmusic_demo.json").write_text(json.dumps(self.manifest(), indent=2) + "\n")
        return root


def write_demo(
    root: str | Path,
    seed: int = 0,
    dataset: str = "nmed-t",
    n_subjects: int = 4,
    duration_s: float = 120.0,
    sfreq: float = 125.0,
    audio_sr: int = 16000,
    music_response: bool = True,
    response_gain: float = 1.0,
    conditions: Sequence[str] = ("orig", "rev"),
    songs: Iterable[int] | None = None,
    phase_locked_fraction: float = 0.5,
    induced_fraction: float = 0.3,
    audio_margin_s: float = 2.0,
) -> Path:
    """Write the demo set under ``root`` in the NMED release layout (with ``stimuli/songNN.wav``).

    ``dataset="nmed-t"`` writes ``songNN_Imputed.mat`` for songs 21..30 (or the global ``songs`` given);
    ``"nmed-h"`` writes ``CleanEEG_aggregatedByStimulus_<cond>.zip`` for ``conditions`` (``orig`` and/or
    ``rev``), hearings a and b, each subject hearing one condition of each song (Latin square).
    Subject ids are 1..n_subjects; their order in ``subsNN`` is shuffled per file, as the reader must
    not assume it. ``music_response=False`` writes the identical noise without the music (the
    no-music control; write it to another root). Also writes ``chanmusic_demo.json`` (the settings).
    Returns ``root``. See the module docstring for the design and SNR.
    """
    gen = DemoGenerator(seed=seed, dataset=dataset, n_subjects=n_subjects, duration_s=duration_s,
                        sfreq=sfreq, audio_sr=audio_sr, music_response=music_response,
                        response_gain=response_gain, conditions=conditions, songs=songs,
                        phase_locked_fraction=phase_locked_fraction, induced_fraction=induced_fraction,
                        audio_margin_s=audio_margin_s)
    return gen.write(root)

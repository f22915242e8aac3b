"""Song audio: a small additive synthesiser (melody, bass, drums, loudness sections), one song per stimulus.

Each song takes its tempo from :data:`datamodules.songs.SONGS` (the NMED-T song's BPM) and draws from its own
stream a key, a mode, a timbre (harmonic roll-off, note decay), a note density, a drum pattern, and per 4-bar
section a loudness and which layers play (melody 85 %, bass 75 %, drums 70 %; at least one), so songs differ in
rhythm, pitch range, brightness and dynamics, and a song changes from section to section as real songs do. Returned beside the audio
is the melody's pitch (MIDI number) per EEG frame — the score, used as the pitch-height feature.
"""
from __future__ import annotations

import numpy as np

from ..songs import song_of
from .config import AUDIO_SR, HOP, SONG, rng

MODES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10),
         "dorian": (0, 2, 3, 5, 7, 9, 10), "pentatonic": (0, 2, 4, 7, 9)}


def _hz(midi: np.ndarray | float) -> np.ndarray | float:
    return 440.0 * 2.0 ** ((np.asarray(midi) - 69.0) / 12.0)


def _tone(f0: float, n: int, n_harm: int, rolloff: float, decay_s: float) -> np.ndarray:
    """A harmonic tone of ``n`` samples: partials 1/k^rolloff below Nyquist, 5 ms attack, exponential decay."""
    t = np.arange(n) / AUDIO_SR
    k = np.arange(1, n_harm + 1)
    k = k[k * f0 < AUDIO_SR / 2 - 500]
    wave = (np.sin(2 * np.pi * f0 * t[:, None] * k[None, :]) / k[None, :] ** rolloff).sum(1)
    env = np.minimum(t / 0.005, 1.0) * np.exp(-t / decay_s)
    env[-min(64, n):] *= np.linspace(1.0, 0.0, min(64, n))
    return wave * env


def _drum(kind: str, g: np.random.Generator) -> np.ndarray:
    if kind == "kick":
        n = int(0.18 * AUDIO_SR)
        t = np.arange(n) / AUDIO_SR
        freq = 50.0 + 90.0 * np.exp(-t / 0.03)
        return np.sin(2 * np.pi * np.cumsum(freq) / AUDIO_SR) * np.exp(-t / 0.06)
    n = int((0.12 if kind == "snare" else 0.04) * AUDIO_SR)
    t = np.arange(n) / AUDIO_SR
    noise = g.standard_normal(n)
    if kind == "hat":
        noise = np.diff(noise, prepend=0.0)  # crude high-pass: a bright tick
    return noise * np.exp(-t / (0.04 if kind == "snare" else 0.01)) * (0.5 if kind == "snare" else 0.25)


def _add(out: np.ndarray, start: int, x: np.ndarray, gain: float) -> None:
    if start >= len(out):
        return
    n = min(len(x), len(out) - start)
    out[start:start + n] += gain * x[:n]


def synth_song(seed: int, stimulus: int, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """``(audio [S] float32 at AUDIO_SR in [-1, 1], melody_midi [ceil(S / HOP)])`` of ``songNN``.

    ``seconds`` is the length written; the melody pitch holds the last note through rests.
    """
    g = rng(seed, SONG, stimulus)
    bpm = float(song_of("nmed-t", stimulus).bpm or 100.0)
    beat = 60.0 / bpm
    n = int(np.ceil(seconds * AUDIO_SR))
    mel = np.zeros(n)
    acc = np.zeros(n)
    drums = np.zeros(n)
    root = int(g.integers(45, 58))
    scale = np.array(MODES[str(g.choice(list(MODES)))])
    degrees = np.concatenate([scale + 12 * o for o in range(3)]) + root + 12
    rolloff, decay = float(g.uniform(0.7, 2.2)), float(g.uniform(0.08, 0.6))
    n_harm = int(g.integers(3, 12))
    p_eighth = float(g.uniform(0.1, 0.8))     # how often a beat is split into two eighth notes
    p_rest = float(g.uniform(0.05, 0.3))
    pattern = {"kick": g.random(8) < 0.5, "snare": g.random(8) < 0.3, "hat": g.random(8) < 0.7}
    pattern["kick"][0] = True
    n_beats = int(np.ceil(seconds / beat)) + 1
    n_sections = n_beats // 16 + 2
    section_gain = 10.0 ** (g.uniform(-12.0, 0.0, size=n_sections) / 20.0)
    layers = g.random((n_sections, 3)) < np.array([0.85, 0.75, 0.7])  # melody, bass, drums on in a section
    layers[~layers.any(1), 0] = True
    pitch_track = np.full(n, float(degrees[len(degrees) // 2]))
    step = len(degrees) // 2
    for b in range(n_beats):
        t0 = b * beat
        gain = section_gain[b // 16]
        play_mel, play_bass, play_drums = layers[b // 16]
        # melody: one or two notes per beat on a random walk over the scale
        subs = 2 if g.random() < p_eighth else 1
        for s in range(subs):
            start = int((t0 + s * beat / subs) * AUDIO_SR)
            step = int(np.clip(step + g.integers(-2, 3), 0, len(degrees) - 1))
            if g.random() < p_rest or not play_mel:
                continue
            midi = float(degrees[step])
            dur = int(beat / subs * AUDIO_SR)
            _add(mel, start, _tone(float(_hz(midi)), dur, n_harm, rolloff, decay), 0.25 * gain)
            if start < n:
                pitch_track[start:] = midi
        # bass: the root or the fifth on each beat
        bass = root - 12 + (7 if (b % 4) == 2 else 0)
        if play_bass:
            _add(acc, int(t0 * AUDIO_SR), _tone(float(_hz(bass)), int(beat * AUDIO_SR), 4, 1.5, 0.25), 0.3 * gain)
        for e in range(2 if play_drums else 0):  # drums on an 8-step (two-beat) pattern of eighths
            idx = (2 * b + e) % 8
            start = int((t0 + e * beat / 2) * AUDIO_SR)
            for kind in ("kick", "snare", "hat"):
                if pattern[kind][idx]:
                    _add(drums, start, _drum(kind, g), 0.5 * gain)
    audio = mel + acc + drums
    audio = audio / (np.abs(audio).max() + 1e-9) * 0.9
    frames = int(np.ceil(n / HOP))
    return audio.astype(np.float32), pitch_track[::HOP][:frames]

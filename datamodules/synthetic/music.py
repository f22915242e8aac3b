"""Synthetic songs (:func:`synth_song`): one per row of :data:`datamodules.songs.SONGS`, depending on the song only
(tempo, key, mode, chord progression, timbres, drum sounds, 8-bar sections from four arrangements, a random-walk
melody); see ``docs/synthetic.md`` for the design."""
from __future__ import annotations

import math

import numpy as np

from ..songs import SONGS
from . import seeds

_NMEDH_BPM = {10: 104.0, 11: 118.0, 12: 86.0, 13: 132.0}  # stand-ins: the table has no NMED-H tempi
_MODES = {
    "major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10), "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}
_MODE_NAMES = tuple(_MODES)


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
    rng = np.random.default_rng([seeds.MUSIC, int(song)])
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

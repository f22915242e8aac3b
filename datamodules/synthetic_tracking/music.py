"""Synthetic songs: tonal music with a tempo, a metre, sections, a loudness envelope and changing timbre.

Each song is a 4/4 loop at the tempo of its NMED-T namesake (the release's table: 56-150 BPM): a chord pad, a bass on
beats 1 and 3, a melody on eighth notes drawn from the key's scale, and (in most sections) a kick on every beat, a
snare on 2 and 4 and a hi-hat on the off-beats. Sections of eight bars change the loudness (a crossfaded level plus a
crescendo), the brightness (how many harmonics and how fast they fall off) and whether the drums play, so the
envelope and the spectral flux carry song-specific slow structure as real music does. The plan (beat times,
downbeats, sections) is returned for the beat-locked response, which follows the metrical grid, not the acoustics.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layout import rng_for

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)


@dataclass(frozen=True)
class SongPlan:
    """The score of one synthetic song: tempo, beat onsets (s), which beats open a bar, section starts (s)."""

    stimulus: int
    bpm: float
    beat_times: np.ndarray      # [n_beats] seconds
    downbeat: np.ndarray        # [n_beats] bool, beat 1 of a bar
    section_starts: np.ndarray  # [n_sections] seconds
    section_level_db: np.ndarray
    section_drums: np.ndarray   # [n_sections] bool
    section_brightness: np.ndarray  # [n_sections] harmonic count


def song_bpm(stimulus: int) -> float:
    """The tempo of NMED-T song ``stimulus`` (the release's own table)."""
    from datamodules.nmed.songs import NMEDT_SONGS

    return float(next(s.bpm for s in NMEDT_SONGS if s.number == stimulus))


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def _add_tone(buf: np.ndarray, sr: int, start: float, dur: float, freq: float, amp: float, n_harm: int,
              rolloff: float, attack: float, release: float) -> None:
    """Add a harmonic tone with a linear attack and an exponential decay into ``buf`` (clipped to its end)."""
    i0 = int(start * sr)
    n = min(int(dur * sr), len(buf) - i0)
    if n <= 0 or freq * 2 >= sr:
        return
    t = np.arange(n) / sr
    env = np.minimum(1.0, t / max(attack, 1e-3)) * np.exp(-t / max(release, 1e-3))
    wave = np.zeros(n)
    for h in range(1, n_harm + 1):
        if h * freq >= sr / 2:
            break
        wave += np.sin(2 * np.pi * h * freq * t) / h ** rolloff
    buf[i0:i0 + n] += amp * env * wave


def _add_noise_hit(buf: np.ndarray, sr: int, start: float, dur: float, amp: float, rng: np.random.Generator,
                   highpass: bool) -> None:
    i0 = int(start * sr)
    n = min(int(dur * sr), len(buf) - i0)
    if n <= 0:
        return
    noise = rng.standard_normal(n)
    if highpass:
        noise = np.diff(noise, prepend=0.0)
    buf[i0:i0 + n] += amp * noise * np.exp(-np.arange(n) / (0.25 * dur * sr))


def _add_kick(buf: np.ndarray, sr: int, start: float, amp: float) -> None:
    i0 = int(start * sr)
    n = min(int(0.25 * sr), len(buf) - i0)
    if n <= 0:
        return
    t = np.arange(n) / sr
    phase = 2 * np.pi * (45.0 * t + (110.0 / 30.0) * (1 - np.exp(-30.0 * t)))  # pitch falls 155 -> 45 Hz
    buf[i0:i0 + n] += amp * np.sin(phase) * np.exp(-t / 0.08)


def plan_song(stimulus: int, duration_s: float, seed: int) -> SongPlan:
    """Tempo, beats and sections of a song (the draws depend on the seed and the song only)."""
    rng = rng_for(seed, "song-plan", stimulus)
    bpm = song_bpm(stimulus)
    period = 60.0 / bpm
    offset = rng.uniform(0.1, 0.5)
    beat_times = np.arange(offset, duration_s, period)
    downbeat = (np.arange(len(beat_times)) % 4) == 0
    section_len = 32 * period  # eight bars of 4/4
    section_starts = np.arange(offset, duration_s, section_len)
    n_sec = len(section_starts)
    level = rng.uniform(-12.0, 0.0, n_sec)
    drums = rng.random(n_sec) < 0.75
    drums[0] = rng.random() < 0.5  # intros often start without drums
    brightness = rng.integers(2, 9, n_sec)
    return SongPlan(stimulus, bpm, beat_times, downbeat, section_starts, level, drums, brightness)


def loudness_curve(plan: SongPlan, duration_s: float, rate: float) -> np.ndarray:
    """The song's gain over time (linear amplitude) at ``rate`` Hz: section levels crossfaded over one beat, each
    section with a crescendo of up to 6 dB."""
    t = np.arange(int(round(duration_s * rate))) / rate
    idx = np.clip(np.searchsorted(plan.section_starts, t, side="right") - 1, 0, len(plan.section_starts) - 1)
    start = plan.section_starts[idx]
    length = np.diff(np.append(plan.section_starts, max(duration_s, plan.section_starts[-1] + 1e-3)))[idx]
    cresc = 6.0 * np.clip((t - start) / np.maximum(length, 1e-3), 0.0, 1.0) - 3.0
    db = plan.section_level_db[idx] + cresc
    width = max(1, int(rate * 60.0 / plan.bpm))
    kernel = np.ones(width) / width
    db = np.convolve(np.pad(db, (width, width), mode="edge"), kernel, mode="same")[width:-width]
    return 10.0 ** (db / 20.0)


def synthesize_song(plan: SongPlan, duration_s: float, sr: int, seed: int) -> np.ndarray:
    """Mono float32 audio of a planned song, peak 0.9."""
    rng = rng_for(seed, "song-notes", plan.stimulus)
    n = int(round(duration_s * sr))
    tonal, drums = np.zeros(n), np.zeros(n)
    period = 60.0 / plan.bpm
    root = int(rng.integers(45, 57))
    scale = _MAJOR if rng.random() < 0.5 else _MINOR
    degrees = rng.choice(7, size=4, replace=True)
    degrees[0] = 0
    sec_of = lambda t: int(np.clip(np.searchsorted(plan.section_starts, t, side="right") - 1, 0,
                                   len(plan.section_starts) - 1))
    for b, (tb, down) in enumerate(zip(plan.beat_times, plan.downbeat)):
        s = sec_of(tb)
        n_harm = int(plan.section_brightness[s])
        rolloff = 2.2 - 0.15 * n_harm  # brighter sections: more harmonics, slower fall-off
        chord_deg = int(degrees[(b // 4) % 4])
        chord_root = root + scale[chord_deg]
        if down:  # the pad: a triad held for the bar
            for step in (0, 2, 4):
                deg = chord_deg + step
                note = root + 12 + scale[deg % 7] + 12 * (deg // 7)
                _add_tone(tonal, sr, tb, 4 * period, _midi_hz(note), 0.10, n_harm, rolloff, 0.15, 2.5 * period)
        if b % 2 == 0:  # bass on beats 1 and 3
            _add_tone(tonal, sr, tb, 1.5 * period, _midi_hz(chord_root - 12), 0.25, 3, 1.5, 0.01, 0.6 * period)
        for half in (0.0, 0.5):  # melody on eighths, sometimes resting
            if rng.random() < 0.7:
                note = root + 24 + scale[int(rng.integers(0, 7))] + 12 * int(rng.random() < 0.2)
                _add_tone(tonal, sr, tb + half * period, 0.5 * period, _midi_hz(note), 0.12, n_harm, rolloff,
                          0.005, 0.3 * period)
        if plan.section_drums[s]:
            _add_kick(drums, sr, tb, 0.6)
            if b % 4 in (1, 3):
                _add_noise_hit(drums, sr, tb, 0.15, 0.25, rng, highpass=False)
            _add_noise_hit(drums, sr, tb + 0.5 * period, 0.05, 0.12, rng, highpass=True)
    curve = loudness_curve(plan, duration_s, 100.0)
    gain = np.interp(np.arange(n) / sr, np.arange(len(curve)) / 100.0, curve)
    audio = gain * (tonal + drums)
    peak = float(np.max(np.abs(audio))) or 1.0
    return (0.9 * audio / peak).astype(np.float32)

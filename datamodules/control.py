"""The no-music control: the same EEG, each recording's music targets circularly shifted by its *own* amount.

``control_music`` returns, per window, the music id that replaces the heard one. Within a recording the windows
(sorted by time) take the music of the window ``shift_r`` windows later, circularly; ``shift_r`` is drawn per
recording, seeded, at least ``min_shift`` windows from zero (circularly; default 30 s, longer than a loop, a
chorus or a phrase), never within a beat of a whole number of bars of the song (its BPM in the song table, 4/4
assumed), and spread evenly over the allowed shifts so the recordings of one stimulus are as far apart as they can
be. A recording too short for the minimum, or a window hop that makes every shift a whole number of bars, is an
error naming the setting (never relaxed). Hence:

- the EEG, its recording fingerprint, the song and the set of music windows a recording is paired with are
  unchanged: a model that names the recording (or the song) from noise scores the same as with the real pairing;
- the pairing EEG at song-time t -> music at t + shift_r differs between recordings of one stimulus, so a
  stimulus-locked response shared across subjects (or across a subject's two hearings) cannot carry over from
  training recordings to a test recording, as it could when every recording of a song got the same shift.

- music that repeats at the bar (loops, drum patterns) or within 30 s (riffs, phrases) is not carried over by the
  shift: the shifted window is a different part of the song, not a repetition of the heard one.

What it cannot rule out: a model that both identifies the recording (fingerprint) *and* decodes its
stimulus-locked response could in principle learn each recording's shift from its training windows; structure
repeating at a period longer than the shift and off the bar grid (a verse 45 s later) survives; a song's tempo
that drifts or a metre other than 4/4 moves the bars; and a response locked to the recording's onset is kept by
the real pairing but broken by the control (use ``id50_time`` / ``song_id`` for that).
"""
from __future__ import annotations

import logging
import math
from typing import Sequence

import numpy as np

from datamodules.selection import SelectionError

log = logging.getLogger("chanmusic")

BEATS_PER_BAR = 4  #: the bar the control avoids: 4/4 unless a song's metre is known
DEFAULT_MIN_SHIFT_S = 30.0  #: the control's default smallest shift: longer than any loop, chorus or phrase


def circular_distance(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    d = np.abs(np.asarray(a) - np.asarray(b)) % k
    return np.minimum(d, k - d)


def bar_clear(shifts: np.ndarray, stride_s: float, bpm: float | None, beats_per_bar: int = BEATS_PER_BAR,
              margin_beats: float = 1.0) -> np.ndarray:
    """Which shifts (in windows of ``stride_s`` seconds) lie at least ``margin_beats`` beats from every whole number
    of bars of a song at ``bpm`` (4/4 unless told): a shift of whole bars maps a loop, a chorus or a drum pattern
    onto itself, so the "shifted" music would still be the heard music. ``bpm=None`` or ``margin_beats=0``: all."""
    shifts = np.asarray(shifts)
    if bpm is None or margin_beats <= 0:
        return np.ones(shifts.shape, dtype=bool)
    beat = 60.0 / float(bpm)
    bar = beats_per_bar * beat
    t = shifts * float(stride_s)
    return np.abs(t - np.round(t / bar) * bar) >= margin_beats * beat - 1e-9


def draw_shifts(n: int, allowed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct shifts from the sorted candidate shifts ``allowed``, about evenly spread over them (random
    offset, random order), so recordings of one stimulus are as far apart as the candidates let them be.
    ``ValueError`` when fewer candidates than recordings."""
    if len(allowed) < n:
        raise ValueError(f"{n} recordings need {n} distinct shifts but only {len(allowed)} are allowed")
    u = rng.random()
    idx = np.floor((np.arange(n) + u) * len(allowed) / n).astype(np.int64)
    return rng.permutation(np.asarray(allowed)[idx])


def control_music(rec: np.ndarray, start: np.ndarray, music: np.ndarray, stimulus_of_rec: dict[int, Sequence[int]],
                  seed: int, min_shift: int, stride_s: float | None = None,
                  bpm_of_rec: dict[int, float | None] | None = None, margin_beats: float = 1.0
                  ) -> tuple[np.ndarray, dict[str, int]]:
    """Music id per window under the control (module docstring).

    Args:
        rec, start, music: ``[S]`` per window: recording id, start sample, heard music id.
        stimulus_of_rec: recording id -> the ints naming the audio it heard (e.g. dataset code, stimulus); the
            shifts of one stimulus are drawn together from a generator seeded by ``seed`` and that key.
        min_shift: the smallest distance (in windows) of every shift from zero (circularly).
        stride_s, bpm_of_rec, margin_beats: the bar rule (:func:`bar_clear`): with the window hop in seconds and
            each recording's song tempo, shifts within ``margin_beats`` beats of a whole number of bars are never
            drawn. ``stride_s=None``: no bar rule.
    Returns:
        (``[S]`` music ids, stats: ``min_from_zero`` and ``min_between`` achieved, in windows).
    Raises:
        SelectionError: a recording too short for ``min_shift``, or fewer allowed shifts than recordings.
    """
    out = np.asarray(music).copy()
    by_stim: dict[tuple[int, ...], list[int]] = {}
    for r in np.unique(rec):
        by_stim.setdefault(tuple(int(x) for x in stimulus_of_rec[int(r)]), []).append(int(r))
    order = {int(r): np.flatnonzero(rec == r)[np.argsort(start[rec == r], kind="stable")] for r in np.unique(rec)}
    stats = {"min_from_zero": 1 << 30, "min_between": 1 << 30}
    secs = f" ({min_shift * stride_s:g} s)" if stride_s else ""
    for key, recs in sorted(by_stim.items()):
        k = min(len(order[r]) for r in recs)
        if k < 2 * min_shift + 1:
            longest = (k - 1) // 2
            raise SelectionError(
                f"--data.control_min_shift_s: a shift of at least {min_shift} windows{secs} from zero needs "
                f"recordings of {2 * min_shift + 1} windows, but stimulus {key} has one of {k} — set "
                f"data.control_min_shift_s to at most {longest * stride_s:g} s" if stride_s else
                f"--data.control_min_shift_s: stimulus {key} has a recording of only {k} windows, too short for "
                f"shifts of {min_shift} — lower data.control_min_shift_s")
        cand = np.arange(min_shift, k - min_shift + 1)
        bpm = (bpm_of_rec or {}).get(recs[0])
        if stride_s is not None:
            cand = cand[bar_clear(cand, stride_s, bpm, margin_beats=margin_beats)]
        try:
            shifts = draw_shifts(len(recs), cand, np.random.default_rng([int(seed), 7, *key]))
        except ValueError:
            raise SelectionError(
                f"--data.stride_s: {len(recs)} recordings of stimulus {key} need their own shift, but only "
                f"{len(cand)} shifts of {min_shift}+ windows{secs} lie a beat or more from a whole number of bars "
                f"(song at {bpm} BPM, hop {stride_s} s) — use a hop that is not a whole number of bars (e.g. "
                f"2.1 s for 2-s windows) or a lower data.control_min_shift_s") from None
        for r, s in zip(recs, shifts):
            idx = order[r]
            out[idx] = music[idx[(np.arange(len(idx)) + int(s)) % len(idx)]]
        stats["min_from_zero"] = min(stats["min_from_zero"], int(circular_distance(shifts, 0, k).min()))
        if len(shifts) > 1:
            d = circular_distance(shifts[:, None], shifts[None, :], k)
            stats["min_between"] = min(stats["min_between"], int(d[~np.eye(len(shifts), dtype=bool)].min()))
    if stats["min_between"] == 1 << 30:
        stats["min_between"] = 0
    return out, stats


def min_shift_windows(min_shift_s: float, stride_s: float) -> int:
    """The control's minimum shift in windows: ``min_shift_s`` of recording time, at least 2 windows."""
    return max(2, math.ceil(min_shift_s / stride_s - 1e-9))

"""The no-music control: the same EEG, each recording's music targets circularly shifted by its *own* amount.

``control_music`` returns, per window, the music id that replaces the heard one. Within a recording the windows
(sorted by time) take the music of the window ``shift_r`` windows later, circularly; ``shift_r`` is drawn per
recording, seeded, at least ``min_shift`` windows from zero (circularly) and from every other recording's
shift of the same stimulus. Hence:

- the EEG, its recording fingerprint, the song and the set of music windows a recording is paired with are
  unchanged: a model that names the recording (or the song) from noise scores the same as with the real pairing;
- the pairing EEG at song-time t -> music at t + shift_r differs between recordings of one stimulus, so a
  stimulus-locked response shared across subjects (or across a subject's two hearings) cannot carry over from
  training recordings to a test recording, as it could when every recording of a song got the same shift.

What it cannot rule out: a model that both identifies the recording (fingerprint) *and* decodes its
stimulus-locked response could in principle learn each recording's shift from its training windows; and
slow music structure that repeats within a song (a chorus ``shift_r`` apart) survives any shift.
"""
from __future__ import annotations

import logging
import math
from typing import Sequence

import numpy as np

from datamodules.selection import SelectionError

log = logging.getLogger("chanmusic")


def circular_distance(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    d = np.abs(np.asarray(a) - np.asarray(b)) % k
    return np.minimum(d, k - d)


def draw_shifts(n: int, k: int, min_shift: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` circular shifts of a ``k``-window recording: at least ``min_shift`` from 0 and about evenly
    spread over ``[min_shift, k - min_shift]`` (random offset, random order), so pairwise distances are at
    least ``floor((k - 2 min_shift + 1) / n)``. ``ValueError`` when fewer positions than recordings."""
    lo, hi = min_shift, k - min_shift
    positions = hi - lo + 1
    if positions < n:
        raise ValueError(f"{n} recordings need {n} distinct shifts but only {max(positions, 0)} lie "
                         f"{min_shift}+ windows from zero in a {k}-window recording")
    u = rng.random()
    shifts = lo + np.floor((np.arange(n) + u) * positions / n).astype(np.int64)
    return rng.permutation(shifts)


def control_music(rec: np.ndarray, start: np.ndarray, music: np.ndarray, stimulus_of_rec: dict[int, Sequence[int]],
                  seed: int, min_shift: int) -> tuple[np.ndarray, dict[str, int]]:
    """Music id per window under the control (module docstring).

    Args:
        rec, start, music: ``[S]`` per window: recording id, start sample, heard music id.
        stimulus_of_rec: recording id -> the ints naming the audio it heard (e.g. dataset code, stimulus); the
            shifts of one stimulus are drawn together from a generator seeded by ``seed`` and that key.
        min_shift: the smallest distance (in windows) from zero and between recordings of one stimulus.
    Returns:
        (``[S]`` music ids, stats: ``min_from_zero`` and ``min_between`` achieved, in windows).
    """
    out = np.asarray(music).copy()
    by_stim: dict[tuple[int, ...], list[int]] = {}
    for r in np.unique(rec):
        by_stim.setdefault(tuple(int(x) for x in stimulus_of_rec[int(r)]), []).append(int(r))
    order = {int(r): np.flatnonzero(rec == r)[np.argsort(start[rec == r], kind="stable")] for r in np.unique(rec)}
    stats = {"min_from_zero": 1 << 30, "min_between": 1 << 30}
    for key, recs in sorted(by_stim.items()):
        k = min(len(order[r]) for r in recs)
        m = max(1, min(min_shift, (k - 1) // 2))
        while True:  # relax the distance until every recording gets its own shift
            try:
                shifts = draw_shifts(len(recs), k, m, np.random.default_rng([int(seed), 7, *key]))
                break
            except ValueError:
                if m == 1:
                    raise SelectionError(f"--data.control: {len(recs)} recordings of stimulus {key} cannot each get "
                                     f"their own shift in {k} windows — use shorter windows (data.window_s) or "
                                     f"fewer recordings per stimulus") from None
                m -= 1
        for r, s in zip(recs, shifts):
            idx = order[r]
            out[idx] = music[idx[(np.arange(len(idx)) + int(s)) % len(idx)]]
        stats["min_from_zero"] = min(stats["min_from_zero"], int(circular_distance(shifts, 0, k).min()))
        if len(shifts) > 1:
            d = circular_distance(shifts[:, None], shifts[None, :], k)
            stats["min_between"] = min(stats["min_between"], int(d[~np.eye(len(shifts), dtype=bool)].min()))
    if stats["min_between"] == 1 << 30:
        stats["min_between"] = 0
    if stats["min_from_zero"] < min_shift or 0 < stats["min_between"] < min_shift:
        log.warning("control: recordings too short for shifts %d windows apart: achieved %d from zero, %d between "
                    "recordings of one stimulus", min_shift, stats["min_from_zero"], stats["min_between"])
    return out, stats


def min_shift_windows(min_shift_s: float, stride_s: float) -> int:
    """The control's minimum distance in windows: ``min_shift_s`` of recording time, at least 2 windows."""
    return max(2, math.ceil(min_shift_s / stride_s - 1e-9))

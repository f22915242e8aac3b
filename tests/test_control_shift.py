"""The no-music control's shifts (datamodules.control): at least 30 s from zero by default, never within a beat of a
whole number of the song's bars, and a clear error where the recordings cannot allow it. Expected shifts are
worked out by hand from the tempo (120 BPM: a beat is 0.5 s, a bar 2 s)."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

from datamodules.control import DEFAULT_MIN_SHIFT_S, control_music, min_shift_windows
from datamodules.datamodule import NMEDDataModule
from datamodules.selection import SelectionError


def _layout(n_recs: int, k: int):
    """``n_recs`` recordings of one stimulus, ``k`` 1-s windows each, window i of the song = music id i."""
    rec = np.repeat(np.arange(n_recs), k)
    start = np.tile(np.arange(k) * 125, n_recs)
    music = np.tile(np.arange(k), n_recs)
    return rec, start, music, {r: (1, 21) for r in range(n_recs)}


def _shifts(out, music, rec, k):
    return [int((out[rec == r][0] - music[rec == r][0]) % k) for r in np.unique(rec)]


def test_the_default_minimum_shift_is_30_s():
    assert DEFAULT_MIN_SHIFT_S == 30.0
    assert inspect.signature(NMEDDataModule).parameters["control_min_shift_s"].default == 30.0
    assert min_shift_windows(30.0, 1.0) == 30 and min_shift_windows(30.0, 1.9) == 16


@pytest.mark.parametrize("seed", range(5))
def test_shifts_avoid_whole_bars_and_stay_30_s_from_zero(seed):
    rec, start, music, stim = _layout(6, 120)
    out, stats = control_music(rec, start, music, stim, seed, 30, stride_s=1.0, bpm_of_rec={r: 120.0 for r in stim})
    shifts = _shifts(out, music, rec, 120)
    # at 120 BPM a bar is 2 s: an even shift of 1-s windows is whole bars, an odd one two beats away from them
    assert all(s % 2 == 1 for s in shifts), shifts
    assert all(30 <= s <= 90 for s in shifts) and len(set(shifts)) == 6
    assert stats["min_from_zero"] >= 30


def test_a_looping_song_is_never_shifted_onto_itself():
    """A song built from an 8-s loop (4 bars at 120 BPM): window i sounds like window i mod 8. Under the control no
    window may be paired with audio that sounds like what was heard."""
    rec, start, music, stim = _layout(8, 120)
    for seed in range(10):
        out, _ = control_music(rec, start, music, stim, seed, 30, stride_s=1.0, bpm_of_rec={r: 120.0 for r in stim})
        assert not np.any(out % 8 == music % 8)
    # without the bar rule (no tempo known), a 4-bar shift is allowed and some draw lands on the loop
    hits = [np.any(control_music(rec, start, music, stim, s, 30)[0] % 8 == music % 8) for s in range(10)]
    assert any(hits)


def test_a_recording_too_short_for_the_minimum_is_one_clear_line():
    rec, start, music, stim = _layout(2, 50)  # 50 s: a 30-s shift from zero (circularly) needs 61 windows
    with pytest.raises(SelectionError) as e:
        control_music(rec, start, music, stim, 0, 30, stride_s=1.0)
    assert e.value.where == "--data.control_min_shift_s"
    assert "61 windows" in str(e.value) and "at most 24 s" in e.value.fix and "\n" not in str(e.value)
    assert e.value.exit_code == 2


def test_a_hop_of_whole_bars_is_refused():
    rec, start, music, stim = _layout(2, 120)
    with pytest.raises(SelectionError) as e:  # 2-s hop at 120 BPM: every shift is a whole number of bars
        control_music(rec, start, music, stim, 0, 15, stride_s=2.0, bpm_of_rec={r: 120.0 for r in stim})
    assert e.value.where == "--data.stride_s" and "120.0 BPM" in str(e.value)

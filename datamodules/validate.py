"""Every data setting checked before anything is read: ranges, order, physical limits.

:func:`validate_settings` gets the raw arguments of ``NMEDDataModule.__init__`` (one call at its top) and raises
:class:`SettingError` naming the field (``--data.<name>``), what is wrong and the fix, e.g.::

    --data.bandpass: [40, 1]: the low edge must be below the high edge (it would act as a band-stop) — …

:func:`check_cache_facts` checks an opened cache against the data module's facts (sampling rate, window length)
that the encoder is told. ``chanmusic.core.errors`` prints a :class:`SettingError` as one line, exit code 2.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from chanmusic.core.constants import CONTROLS, SPLIT_MODES
from chanmusic.core.errors import FormattedError
from datamodules.recording import HEARINGS
from datamodules.registry import get_dataset, names
from datamodules.songs import SONGS

log = logging.getLogger("chanmusic")

SCALINGS = ("zscore", "robust", "none")
MIN_WINDOW_SAMPLES = 2


class SettingError(FormattedError, ValueError):
    """A data setting is out of range or inconsistent: ``<where>: <what> — <fix>`` (exit code 2)."""

    exit_code = 2

    def __init__(self, field: str, what: str, fix: str) -> None:
        self.where, self.what, self.fix = f"--data.{field}", what, fix
        super().__init__(f"--data.{field}: {what} — {fix}")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _positive(name: str, value: Any, fix: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not _finite(value) or value <= 0:
        raise SettingError(name, f"must be a positive number (got {value!r})", fix)


def _ints(name: str, values: Any, low: int | None = None) -> list[int]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) and not (isinstance(v, float) and v.is_integer()):
            raise SettingError(name, f"{v!r} is not an integer", f"list integer ids, e.g. [1, 2]")
        if low is not None and v < low:
            raise SettingError(name, f"{v!r} is below {low}", "ids are positive integers as in the release")
        out.append(int(v))
    if not out:
        raise SettingError(name, "is an empty list (selects nothing)", "omit it (null) to keep everything")
    dup = sorted({v for v in out if out.count(v) > 1})
    if dup:
        raise SettingError(name, f"lists {dup} more than once", "list each id once")
    return out


def dataset_choices() -> str:
    """``nmed-t, nmed-h or [nmed-t, nmed-h]``: the values ``--data.dataset`` takes (from the dataset table)."""
    return f"{', '.join(names())} or [{', '.join(names())}]"


def conditions() -> tuple[str, ...]:
    """Every condition (version of a stimulus) of the table's datasets, first seen first (NMED: orig, rev, …)."""
    return tuple(dict.fromkeys(c for d in names() for c in get_dataset(d).conditions))


def native_sfreq(datasets: list[str]) -> float:
    """The rate the selected datasets' recordings hold (what ``expected_sfreq`` defaults to); they must agree."""
    rates = {d: float(get_dataset(d).sfreq) for d in datasets}
    if len(set(rates.values())) > 1:
        raise SettingError("expected_sfreq", "the datasets are recorded at different rates "
                           f"({', '.join(f'{d}: {r:g} Hz' for d, r in rates.items())})",
                           "pool datasets of one rate, or resample the files of one to the other's rate")
    return next(iter(rates.values()))


def validate_settings(args: dict[str, Any]) -> None:
    """Check ``NMEDDataModule``'s raw ``__init__`` arguments (``locals()`` there); raise :class:`SettingError`."""
    a = dict(args)
    datasets = a.get("dataset", names()[0])
    datasets = [datasets] if isinstance(datasets, str) else list(datasets or [])
    for d in datasets or [None]:
        if d not in names():
            raise SettingError("dataset", f"{d!r} is not {' or '.join(names())}",
                               f"pass --data.dataset {dataset_choices()} "
                               f"({'both' if len(names()) == 2 else 'all'} pooled)")
    root = a.get("root")
    roots = list(root.values()) if isinstance(root, dict) else list(root) if isinstance(root, (list, tuple)) else [root]
    for r in roots:  # one folder, or one per dataset (datamodules.selection)
        if r is not None and not Path(str(r)).expanduser().is_dir():
            raise SettingError("root", f"{r} is not a folder",
                               f"point it at the {' / '.join(d.upper() for d in names())} release folder (or run "
                               "`make demo` for demo data)")
    cache_dir = a.get("cache_dir")
    if cache_dir and Path(str(cache_dir)).expanduser().exists() and not Path(str(cache_dir)).expanduser().is_dir():
        raise SettingError("cache_dir", f"{cache_dir} exists and is not a folder", "choose a folder path")
    for name, allowed in (("scaling", SCALINGS), ("control", CONTROLS), ("split", SPLIT_MODES)):
        if name in a and a[name] not in allowed:
            raise SettingError(name, f"{a[name]!r} is not one of {', '.join(allowed)}", f"pick one of {allowed}")

    expected = a.get("expected_sfreq")
    if expected is None:
        expected = native_sfreq(datasets)
    _positive("expected_sfreq", expected, "the releases are at 125 Hz; pass the rate your files hold")
    resample = a.get("resample")
    _positive("resample", resample, "pass a target rate in Hz (e.g. 100) or null to keep the data's rate", True)
    sfreq = float(resample or expected)
    _check_band(a.get("bandpass"), float(expected), resample)
    if a.get("clip") is not None:
        _positive("clip", a["clip"], "clip is in units of the scaled signal (e.g. 10), or null for no clipping")

    window, stride = a.get("window_s", 2.0), a.get("stride_s")
    _positive("window_s", window, "a window length in seconds, e.g. 2.0")
    if round(window * sfreq) < MIN_WINDOW_SAMPLES:
        raise SettingError("window_s", f"{window} s is {round(window * sfreq)} sample(s) at {sfreq:g} Hz",
                           f"use at least {MIN_WINDOW_SAMPLES / sfreq:.3g} s (the paper uses 2.0)")
    _positive("stride_s", stride, "a hop in seconds (default: the window length)", True)
    if stride is not None:
        if round(stride * sfreq) < 1:
            raise SettingError("stride_s", f"{stride} s is less than one sample at {sfreq:g} Hz",
                               f"use at least {1 / sfreq:.3g} s")
        if stride > window:
            log.warning("--data.stride_s %s > --data.window_s %s: %.0f%% of the EEG falls between windows and is "
                        "never used", stride, window, 100 * (1 - window / stride))

    _check_split(a, datasets)
    if a.get("control", "none") == "shift":
        _positive("control_min_shift_s", a.get("control_min_shift_s", 30.0),
                  "the smallest shift in seconds of a recording's music from zero, e.g. 30.0")
    _positive("span_s", a.get("span_s", 8.0), "the split's span of recording time in seconds, e.g. 8.0")
    hearings = a.get("hearings")
    if hearings is not None:
        hearings = [hearings] if isinstance(hearings, str) else list(hearings)
        if not hearings or any(h not in HEARINGS for h in hearings):
            raise SettingError("hearings", f"{hearings} — NMED-H hearings are a (first) and b (second)",
                               "use [a] (the default), [b] or [a, b]")
    for name in ("subjects", "test_subjects"):
        if a.get(name) is not None:  # ints, or "nmed-h:3" strings (checked by datamodules.selection)
            vals = list(a[name])
            ints = [v for v in vals if not isinstance(v, str)]
            if ints or not vals:
                _ints(name, ints or vals, low=1)
    if a.get("songs") is not None:
        songs = _ints("songs", a["songs"], low=0)
        valid = {s.index for s in SONGS if s.dataset in datasets}
        bad = [s for s in songs if s not in valid]
        if bad:
            raise SettingError("songs", f"{bad} are not {'/'.join(datasets)} songs",
                               f"global song ids of this dataset are {sorted(valid)} (datamodules.songs.SONGS)")
    conds = a.get("conditions")
    if conds is not None:
        conds = [conds] if isinstance(conds, str) else list(conds)
        known = conditions()
        bad = [c for c in conds if c not in known]
        if bad or not conds:
            raise SettingError("conditions", f"{bad or '[]'} not among {known}", f"pick from {known}")
    for name, low in (("clap_dim", 1), ("batch_size", 1), ("num_workers", 0)):
        v = a.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
            raise SettingError(name, f"must be an integer >= {low} (got {v!r})", "pass a whole number")


def _check_band(band: Any, expected: float, resample: Any) -> None:
    if band is None:
        return
    band = list(band)
    if len(band) != 2:
        raise SettingError("bandpass", f"{band}: expected [low, high] in Hz", "e.g. [1, 40], or null for none")
    lo, hi = band
    for edge in (lo, hi):
        if edge is not None and (not _finite(edge) or edge <= 0):
            raise SettingError("bandpass", f"{band}: edges must be positive numbers in Hz (or null for a "
                               "one-sided filter)", "e.g. [1, 40]")
    if lo is None and hi is None:
        raise SettingError("bandpass", f"{band}: both edges are null", "give at least one edge, or bandpass: null")
    if lo is not None and hi is not None and lo >= hi:
        raise SettingError("bandpass", f"{band}: the low edge must be below the high edge (MNE would apply it as a "
                           "band-stop)", f"swap them: [{hi}, {lo}]")
    nyq = expected / 2.0
    if hi is not None and hi >= nyq:
        raise SettingError("bandpass", f"{band}: the high edge {hi} Hz is at or above the Nyquist frequency "
                           f"({nyq:g} Hz at {expected:g} Hz)", f"use a high edge below {nyq:g} Hz")
    if resample is not None and hi is not None and hi >= float(resample) / 2:
        raise SettingError("bandpass", f"{band}: the high edge {hi} Hz is at or above the Nyquist frequency of "
                           f"--data.resample {resample} ({float(resample) / 2:g} Hz)",
                           f"lower the high edge below {float(resample) / 2:g} Hz or raise the resample rate")
    if lo is not None and lo >= nyq:
        raise SettingError("bandpass", f"{band}: the low edge {lo} Hz is above the Nyquist frequency", "lower it")


def _check_split(a: dict[str, Any], datasets: list[str]) -> None:
    tf, vf = a.get("test_fraction", 0.05), a.get("val_fraction", 0.05)
    if not _finite(tf) or not 0 < tf < 1:
        raise SettingError("test_fraction", f"must be in (0, 1) (got {tf!r})", "e.g. 0.1")
    if not _finite(vf) or not 0 <= vf < 1:
        raise SettingError("val_fraction", f"must be in [0, 1) (got {vf!r})", "e.g. 0.1")
    if a.get("split", "random") == "block" and tf + vf >= 1:
        raise SettingError("val_fraction", f"test_fraction {tf} + val_fraction {vf} leave no training time",
                           "make their sum < 1")
    gap = a.get("gap_s", 0.0)
    if gap is not None and (not _finite(gap) or gap < 0):
        raise SettingError("gap_s", f"must be >= 0 seconds (got {gap!r})", "e.g. 0 or 2.0")
    seed = a.get("split_seed", 42)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SettingError("split_seed", f"must be an integer (got {seed!r})", "e.g. 42")
    mode = a.get("split", "random")
    two = [d for d in names() if len(get_dataset(d).hearings) > 1]  # datasets with first and second hearings
    if mode == "hearing" and not set(two) & set(datasets):
        raise SettingError("split", f"hearing needs {' or '.join(d.upper() for d in two)} (first vs second hearing)",
                           f"set --data.dataset {' or '.join(two)}")
    subjects, test_subjects = a.get("subjects"), a.get("test_subjects")
    if test_subjects is not None and mode != "subjects":
        raise SettingError("test_subjects", f"is only used by --data.split subjects (split is {mode!r})",
                           "set --data.split subjects or drop --data.test_subjects")
    if subjects is not None and test_subjects is not None and not any(
            isinstance(v, str) for v in list(subjects) + list(test_subjects)):
        outside = sorted(set(test_subjects) - set(subjects))
        if outside:
            raise SettingError("test_subjects", f"{outside} are not among --data.subjects {list(subjects)}",
                               "test subjects must be selected too")
        if set(subjects) <= set(test_subjects):
            raise SettingError("test_subjects", "leaves no training subject", "keep at least one subject for training")
    _check_test_songs(a, mode)


def _check_test_songs(a: dict[str, Any], mode: str) -> None:
    """``test_songs`` (the songs split's held-out songs): with ``split: songs`` only, at least two, among the
    selected ``songs`` when those are given (songs absent from the data are refused when it is read)."""
    from datamodules.song_split import MIN_TEST_SONGS

    test_songs = a.get("test_songs")
    if test_songs is None:
        if mode == "songs":
            raise SettingError("test_songs", "the songs split needs the held-out songs",
                               f"pass at least {MIN_TEST_SONGS} global song ids, e.g. --data.test_songs [0, 5]")
        return
    if mode != "songs":
        raise SettingError("test_songs", f"is only used by --data.split songs (split is {mode!r})",
                           "set --data.split songs or drop --data.test_songs")
    held = _ints("test_songs", test_songs, low=0)
    if len(set(held)) < MIN_TEST_SONGS:
        raise SettingError("test_songs", f"{sorted(set(held))} holds out fewer than {MIN_TEST_SONGS} songs (song "
                           "identification among the held-out songs would have no distractor)",
                           f"hold out at least {MIN_TEST_SONGS} songs")
    songs = a.get("songs")
    if songs is not None:
        outside = sorted(set(held) - set(songs))
        if outside:
            raise SettingError("test_songs", f"songs {outside} are not among --data.songs {list(songs)}",
                               "hold out selected songs, or add them to --data.songs")
        if set(songs) <= set(held):
            raise SettingError("test_songs", "leaves no training song", "keep at least one song for training")


def check_cache_facts(dm: Any, cache: Any) -> None:
    """The opened cache matches what the encoder is told: the sampling rate and the window length in samples."""
    m = cache.manifest
    sfreq, window = m.get("sfreq"), m.get("window")
    if sfreq is not None and not math.isclose(float(sfreq), float(dm.sfreq)):
        raise SettingError("expected_sfreq", f"the cache {cache.path} holds EEG at {sfreq:g} Hz but the encoder "
                           f"would be told {dm.sfreq:g} Hz", f"pass --data.expected_sfreq {sfreq:g} (or "
                           f"--data.resample {dm.sfreq:g}) and prepare again")
    if window is not None and int(window) != int(dm.n_times):
        raise SettingError("window_s", f"the cache {cache.path} cuts {window}-sample windows but the encoder expects "
                           f"{dm.n_times}", "delete the cache folder and prepare again")

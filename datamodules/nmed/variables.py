"""Checking the release's variables of one file: ``subsNN`` (participant ids), ``fs`` (the sampling rate) and
``dataNN`` (electrode × time × participant, finite), each failure one :class:`NMEDFormatError` with the fix."""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from .recording import NMED_N_CHANNELS, NMEDFormatError


def parse_subjects(label: str, var: str, raw: Any) -> list[int]:
    """Participant ids of ``subsNN`` (numbers or strings like ``'S02'``), each once."""
    arr = np.asarray(raw, dtype=object).ravel()
    ids: list[int] = []
    for item in arr:
        while isinstance(item, np.ndarray):  # cells of MATLAB strings come as nested arrays
            if item.dtype.kind in "US":
                item = "".join(str(x) for x in item.ravel())
            elif item.size == 1:
                item = item.ravel()[0]
            else:
                break
        try:
            if isinstance(item, (bytes, str)):
                text = item.decode() if isinstance(item, bytes) else item
                digits = re.findall(r"\d+", text)
                if len(digits) != 1:
                    raise ValueError(text)
                ids.append(int(digits[0]))
            else:
                value = float(item)
                if not np.isfinite(value) or value != int(value):
                    raise ValueError(value)
                ids.append(int(value))
        except (TypeError, ValueError):
            raise NMEDFormatError(
                f"{label}: {var} holds {item!r}, which is not a participant id (expected integers or "
                "strings like 'S02')"
            ) from None
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise NMEDFormatError(f"{label}: {var} lists participant(s) {dupes} more than once ({ids}) — the release "
                              f"lists each participant once: re-download the file, or undo the edit that "
                              f"duplicated a column")
    return ids


def parse_fs(label: str, raw: Any) -> float:
    """The positive sampling rate stored in ``fs``."""
    arr = np.asarray(raw).ravel()
    try:
        value = float(arr[0]) if arr.size == 1 else float("nan")
    except (TypeError, ValueError):
        value = float("nan")
    if arr.size != 1 or not np.isfinite(value) or value <= 0:
        raise NMEDFormatError(
            f"{label}: fs = {np.asarray(raw).tolist()!r} is not a positive sampling rate; the release "
            "stores fs = 125 (Hz) in every file"
        )
    return value


def check_data(label: str, var: str, raw: Any, n_subjects: int, subs_var: str) -> np.ndarray:
    """``dataNN`` as a numeric ``[125, T, n_subjects]`` array, or an error saying how its layout is off."""
    data = np.asarray(raw)
    if data.dtype == object or data.dtype.kind not in "fiu":
        raise NMEDFormatError(
            f"{label}: {var} is not a numeric array (dtype {data.dtype}); expected 125 × T × participants"
        )
    if data.ndim == 2 and data.shape[0] == NMED_N_CHANNELS and n_subjects == 1:
        data = data[:, :, None]  # MATLAB drops a trailing singleton axis
    if data.ndim != 3:
        raise NMEDFormatError(
            f"{label}: {var} has shape {data.shape}; expected 3 axes, electrode × time × participant "
            f"(125 × T × {n_subjects})"
        )
    if data.shape[0] != NMED_N_CHANNELS:
        axes = [i for i, n in enumerate(data.shape) if n == NMED_N_CHANNELS]
        if axes:
            raise NMEDFormatError(
                f"{label}: {var} has shape {data.shape}: the 125 electrodes are on axis {axes[0]}, not "
                "axis 0 — the array looks transposed. The release's layout is electrode × time × "
                "participant (125 × T × S); if you converted the file, permute it back (numpy: "
                f"np.moveaxis(data, {axes[0]}, 0)), and note that h5py shows MATLAB v7.3 arrays with their "
                "axes reversed: give the original .mat file to this reader instead"
            )
        hint = (" (the release drops E125-E128 and keeps E1-E124 + Cz; select those rows)"
                if data.shape[0] in (128, 129) else "")
        raise NMEDFormatError(
            f"{label}: {var} has {data.shape[0]} rows (shape {data.shape}); expected 125 electrodes "
            f"(E1-E124 + Cz) on axis 0{hint} — "
            + ("keep those 125 rows" if hint else "re-download the release file (every file holds those 125 rows; "
               "an electrode missing from a converted copy cannot be recovered)")
        )
    if data.shape[2] != n_subjects:
        if data.shape[1] == n_subjects:
            detail = ("axis 1 matches the participant count: time and participant axes look swapped; "
                      "permute to 125 × T × S (np.swapaxes(data, 1, 2))")
        else:
            detail = "the file is inconsistent; re-download it"
        raise NMEDFormatError(
            f"{label}: {var} has shape {data.shape} but {subs_var} lists {n_subjects} participants; "
            f"expected 125 × T × {n_subjects} — {detail}"
        )
    if data.shape[1] == 0:
        raise NMEDFormatError(f"{label}: {var} has no samples (shape {data.shape})")
    return data


def check_finite(label: str, var: str, data: np.ndarray, ids: list[int]) -> None:
    """Raise if ``data`` ``[125, T, S]`` holds NaN/Inf, naming the participants affected."""
    counts = np.zeros(data.shape[2], dtype=np.int64)
    for s in range(data.shape[2]):
        sl = data[:, :, s]
        if data.dtype.kind == "f":
            counts[s] = sl.size - int(np.count_nonzero(np.isfinite(sl)))
    if counts.any():
        parts = [f"participant {ids[s]} (slice {s + 1}): {counts[s]} values"
                 for s in np.flatnonzero(counts)]
        raise NMEDFormatError(
            f"{label}: {var} holds {int(counts.sum())} NaN/Inf values — " + "; ".join(parts)
            + ". The release's Imputed data have none: re-download the file, or interpolate these "
            "samples and save a fixed copy"
        )


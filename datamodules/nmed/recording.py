"""The NMED readers' vocabulary: the channel count, NMED-H conditions and hearings, :class:`Recording`,
:class:`NMEDFormatError`, the dataset names and the montage of the 125 rows.

The channel-name table itself (``E1``–``E124`` + ``Cz``) is :data:`chanmusic.core.electrodes.NMED_CH_NAMES` (a tuple),
re-exported here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from chanmusic.core.electrodes import NMED_CH_NAMES
from chanmusic.core.errors import FormattedError

if TYPE_CHECKING:
    import mne

NMED_N_CHANNELS = len(NMED_CH_NAMES)  # 125
NMEDH_CONDITION_NAMES: tuple[str, ...] = ("orig", "rev", "phase", "meas")
NMEDH_HEARINGS: tuple[str, ...] = ("a", "b")


class NMEDFormatError(FormattedError, ValueError):
    """An NMED file, folder or audio file is missing or not in the release's format."""


@dataclass
class Recording:
    """One participant listening to one stimulus (once)."""

    dataset: str            # "nmed-t" | "nmed-h"
    subject: int            # participant id as stored in subsNN
    song: int               # global song index into datamodules.songs.SONGS
    eeg: np.ndarray = field(repr=False)  # float32 [C, T], µV, untouched
    sfreq: float
    ch_names: list[str] = field(repr=False)
    stimulus: int = 0       # release number (NMED-T 21..30, NMED-H 21..36)
    condition: str = "orig"  # NMED-H: orig | rev | phase | meas
    hearing: str = "a"      # NMED-H: a (first) | b (second)
    source: str = ""        # file path (NMED-H: "<zip>::<member>")

    @property
    def n_samples(self) -> int:
        return int(self.eeg.shape[-1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / float(self.sfreq)


def nmed_montage() -> mne.channels.DigMontage:
    """The MNE ``DigMontage`` of the 125 NMED rows (``GSN-HydroCel-129`` restricted to E1-E124 + Cz)."""
    import mne

    full = mne.channels.make_standard_montage("GSN-HydroCel-129")
    pos = full.get_positions()
    ch_pos = {name: pos["ch_pos"][name] for name in NMED_CH_NAMES}
    return mne.channels.make_dig_montage(
        ch_pos=ch_pos, nasion=pos["nasion"], lpa=pos["lpa"], rpa=pos["rpa"],
        coord_frame=pos["coord_frame"],
    )


def dataset_name(dataset: object) -> str | None:
    """``"nmed-t"`` or ``"nmed-h"`` from any common spelling (NMED-T, nmedt, nmed_t, t …), or None."""
    key = re.sub(r"[^a-z]", "", str(dataset).lower())
    return {"nmedt": "nmed-t", "t": "nmed-t", "nmedh": "nmed-h", "h": "nmed-h"}.get(key)


def normalize_dataset(dataset: str) -> str:
    """:func:`dataset_name`, or an :class:`NMEDFormatError` for a name that is neither dataset."""
    name = dataset_name(dataset)
    if name is None:
        raise NMEDFormatError(f"unknown dataset {dataset!r}: expected 'nmed-t' or 'nmed-h'")
    return name


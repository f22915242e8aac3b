"""The NMED readers' vocabulary: the channel count, NMED-H conditions and hearings, the dataset names the reader
accepts, :class:`NMEDFormatError` and the montage of the 125 rows.

The channel-name table itself (``E1``–``E124`` + ``Cz``) is :data:`chanmusic.core.electrodes.NMED_CH_NAMES` (a tuple),
re-exported here; :class:`Recording` is every dataset's (:mod:`datamodules.recording`), re-exported too.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from chanmusic.core.electrodes import NMED_CH_NAMES
from datamodules.protocol import spelling_key
from datamodules.recording import DataFormatError, Recording

if TYPE_CHECKING:
    import mne

__all__ = ["NMED_CH_NAMES", "NMED_N_CHANNELS", "NMEDH_CONDITION_NAMES", "NMEDH_HEARINGS", "NMEDFormatError",
           "Recording", "nmed_montage", "normalize_dataset"]

NMED_N_CHANNELS = len(NMED_CH_NAMES)  # 125
NMEDH_CONDITION_NAMES: tuple[str, ...] = ("orig", "rev", "phase", "meas")
NMEDH_HEARINGS: tuple[str, ...] = ("a", "b")
#: the two releases and the short spellings of their names (NMED-T, nmed_t, nmedt need none: see spelling_key)
NMED_ALIASES: dict[str, tuple[str, ...]] = {"nmed-t": ("t",), "nmed-h": ("h",)}

#: an NMED file, folder or audio file is missing or not in the release's format (the readers' name for
#: :class:`datamodules.recording.DataFormatError`)
NMEDFormatError = DataFormatError


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


def normalize_dataset(dataset: str) -> str:
    """``"nmed-t"`` or ``"nmed-h"`` from any common spelling (NMED-T, nmedt, nmed_t, t …), or an
    :class:`NMEDFormatError` for a name that is neither release."""
    key = spelling_key(dataset)
    for name, aliases in NMED_ALIASES.items():
        if key in (spelling_key(name), *aliases):
            return name
    raise NMEDFormatError(f"unknown dataset {dataset!r}: expected 'nmed-t' or 'nmed-h'")

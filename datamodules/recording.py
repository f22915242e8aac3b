"""What a dataset hands to ``prepare``: one :class:`Recording` (a participant hearing a stimulus once) and the one
error type for input files a dataset cannot read (:class:`DataFormatError`)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from chanmusic.core.errors import FormattedError

#: the hearings a recording may be: ``a`` the first time a participant heard the stimulus, ``b`` the second
HEARINGS: tuple[str, ...] = ("a", "b")


class DataFormatError(FormattedError, ValueError):
    """A dataset's file, folder or audio file is missing or not in the dataset's format (one line naming the file and
    the fix). The NMED readers call it :class:`datamodules.nmed.NMEDFormatError`."""


@dataclass
class Recording:
    """One participant listening to one stimulus (once)."""

    dataset: str            # the dataset's name in the table (datamodules.registry), e.g. "nmed-t"
    subject: int            # participant id as the dataset numbers them (0-999)
    song: int               # global song id: a row of datamodules.songs.SONGS
    eeg: np.ndarray = field(repr=False)  # float32 [C, T], µV, untouched
    sfreq: float
    ch_names: list[str] = field(repr=False)
    stimulus: int = 0       # what was heard, in the dataset's numbering (NMED: the release number, songNN)
    condition: str = "orig"  # the stimulus's version (NMED-H: orig | rev | phase | meas)
    hearing: str = "a"      # a (first) | b (second hearing)
    source: str = ""        # where it was read (a file path; NMED-H: "<zip>::<member>")

    @property
    def n_samples(self) -> int:
        return int(self.eeg.shape[-1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / float(self.sfreq)

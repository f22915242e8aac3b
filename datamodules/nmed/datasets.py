"""NMED-T and NMED-H as datasets of the protocol (:class:`datamodules.protocol.MusicEEGDataset`): the release readers
(:func:`datamodules.nmed.read_recordings`) behind the interface every other part of chanmusic uses."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from chanmusic.core.constants import NATIVE_SFREQ
from chanmusic.core.electrodes import NMED_CH_NAMES

from ..protocol import MusicEEGDataset, Recording, RecordingRequest
from ..songs import SONGS
from .reader import read_recordings
from .recording import NMED_ALIASES, NMEDH_CONDITION_NAMES, NMEDH_HEARINGS, nmed_montage
from .songs import NMEDH_CONDITIONS, NMEDH_SONGS, NMEDT_SONGS, nmedh_base_number
from .sources import nmedh_sources, nmedt_sources


class NMEDT(MusicEEGDataset):
    """NMED-T: 20 participants, 10 songs, each heard once; ``song21_Imputed.mat`` … ``song30_Imputed.mat``."""

    name = "nmed-t"
    code = 1
    aliases = NMED_ALIASES["nmed-t"]
    songs = NMEDT_SONGS
    ch_names = NMED_CH_NAMES
    sfreq = NATIVE_SFREQ
    file_pattern = "song*_Imputed.mat"

    def recordings(self, root: Path, request: RecordingRequest) -> Iterator[Recording]:
        return read_recordings(root, self.name, subjects=request.subjects, songs=request.songs,
                               require_subjects=False, expected_sfreq=request.expected_sfreq)

    def montage(self):
        return nmed_montage()

    def missing_files(self, root: Path, request: RecordingRequest) -> list[str]:
        """The ``songNN_Imputed.mat`` files of the requested songs that are not in ``root``."""
        seen = {s.stimulus for s in nmedt_sources(root)}
        return [f"song{n}_Imputed.mat" for n in _numbers(self, request) if n not in seen]


class NMEDH(MusicEEGDataset):
    """NMED-H: 48 participants, 4 songs in 4 conditions (intact, reversed, phase- and measure-scrambled), each heard
    twice; ``CleanEEG_aggregatedByStimulus_<condition>.zip`` (or the same names extracted as folders)."""

    name = "nmed-h"
    code = 2
    aliases = NMED_ALIASES["nmed-h"]
    songs = NMEDH_SONGS
    ch_names = NMED_CH_NAMES
    sfreq = NATIVE_SFREQ
    file_pattern = "CleanEEG_aggregatedByStimulus_*"
    conditions = NMEDH_CONDITION_NAMES
    hearings = NMEDH_HEARINGS

    def recordings(self, root: Path, request: RecordingRequest) -> Iterator[Recording]:
        return read_recordings(root, self.name, subjects=request.subjects, songs=request.songs,
                               conditions=request.conditions, hearings=request.hearings, require_subjects=False,
                               expected_sfreq=request.expected_sfreq)

    def eeg_files(self, root: Path) -> list[Path]:
        """The condition archives; an archive extracted to a folder counts as the ``.mat`` files inside it."""
        return [q for p in super().eeg_files(root) for q in ([p] if p.is_file() else sorted(p.rglob("*.mat")))]

    def song_number(self, stimulus: int) -> int:
        """The base song (21-24) of a stimulus in any condition (e.g. reversed song 25 is song 21)."""
        return nmedh_base_number(int(stimulus))

    def montage(self):
        return nmed_montage()

    def missing_files(self, root: Path, request: RecordingRequest) -> list[str]:
        """Archive members ``<cond>.zip::songNN_h`` of the requested songs, conditions (default: every archive
        present) and hearings that are not under ``root``."""
        sources = nmedh_sources(root, request.conditions)
        conds = request.conditions
        if conds is None:
            conds = [c for c in NMEDH_CONDITIONS if any(s.condition == c for s in sources)]
        seen = {(s.stimulus, s.hearing) for s in sources}
        out = []
        for c in conds:
            for n in _numbers(self, request):
                stim = NMEDH_CONDITIONS[c] + n - 21
                out += [f"CleanEEG_aggregatedByStimulus_{c}.zip::song{stim}_{h}" for h in (request.hearings or "ab")
                        if (stim, h) not in seen]
        return out


def _numbers(dataset: MusicEEGDataset, request: RecordingRequest) -> list[int]:
    """The release numbers of the songs ``request`` asks for (all when it names none)."""
    wanted = request.songs
    return [s.number for s in SONGS if s.dataset == dataset.name and (wanted is None or s.index in wanted)]

"""The true audio of a cached music segment, cut exactly as ``prepare`` cut it for CLAP and the mel (for the
reconstruction stage's true clips, CLAP check and genre agreement)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from datamodules.prepare import cut_clip
from datamodules.registry import get_dataset
from datamodules.stimulus_audio import read_audio_file

__all__ = ["TrueAudio"]


class TrueAudio:
    """The true audio clip of a cached music segment, cut exactly as ``prepare`` cut it for CLAP and the mel.

    Each song file is read once (at ``sr``, default 16 kHz) and kept in memory.
    """

    def __init__(self, dm, sr: int | None = None):
        from chanmusic.audio import MEL_SR

        self.dm = dm
        self.sr = int(sr or MEL_SR)
        self.sfreq = float(dm.cache.manifest.get("sfreq", dm.sfreq))
        self._audio: dict[str, np.ndarray] = {}

    def stimulus(self, music: int) -> str:
        """``"nmed-t:21"``-style key of the segment's stimulus."""
        return str(self.dm.cache.manifest["stimuli"][int(self.dm.cache.music[int(music), 0])])

    def clip(self, music: int) -> np.ndarray:
        _, start, length = (int(v) for v in self.dm.cache.music[int(music)])
        key = self.stimulus(music)  # datasets number their stimuli independently: the dataset picks the folder
        dataset, number = key.split(":")[0], int(key.split(":")[1])
        if key not in self._audio:
            roots = {src.dataset: src.audio_root for src in getattr(self.dm, "sources", [])}
            path = get_dataset(dataset).audio_path(roots.get(dataset, self.dm.audio_root), number)
            self._audio[key] = read_audio_file(path, target_sr=self.sr)[0]
        return cut_clip(self._audio[key], self.sr, start, length, self.sfreq)  # the cache's own cutting rule

    def clips(self, music: Sequence[int]) -> np.ndarray:
        """``[B, S]`` float32 (all segments of a run have one length)."""
        return np.stack([self.clip(int(m)) for m in music])

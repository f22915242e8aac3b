"""The torch ``Dataset`` of prepared windows: EEG windows sliced from the memmapped cache with their CLAP
targets, mels and ids, a whole batch gathered in one read (:class:`WindowDataset`, :func:`collate_batch`)."""
from __future__ import annotations

from collections.abc import Sequence as SequenceABC
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.cache import PreparedCache, recording_view
from datamodules.songs import genre_index


class WindowDataset(Dataset):
    """EEG windows sliced from the memmapped cache; one dict per window (the batch contract of docs/architecture.md)."""

    def __init__(self, cache: PreparedCache, rows: np.ndarray, music_of_row: np.ndarray, clap: np.ndarray):
        self.path = cache.path
        self.shape = tuple(cache.manifest["eeg_shape"])
        self.recordings = [{"offset": r["offset"], "n_samples": r["n_samples"]} for r in cache.recordings]
        self.rows = np.asarray(rows, dtype=np.int64)
        seg = cache.segments[self.rows]
        self.rec, self.start = seg[:, 0].copy(), seg[:, 3].copy()
        self.length = int(seg[0, 4]) if len(seg) else 0
        self.subject, self.song, self.recording = seg[:, 1], seg[:, 2], seg[:, 0]
        self.music = music_of_row[self.rows]
        self.music_table = cache.music
        self.clap = clap
        self.mel = cache.mel
        self.genre = np.array([genre_index(int(s)) for s in self.song], dtype=np.int64)
        self._eeg: list[np.ndarray] | None = None  # per recording [C, n] views of the memmap

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> "PrebatchedItems":
        """A whole batch in one gather from the memmap (the DataLoader's fetcher calls this with a batch's
        indices). Returns the items (views into the batch), carrying the batch dict itself for
        :func:`collate_batch`; any other collate function sees ordinary per-item dicts."""
        return PrebatchedItems(self._batch(indices))

    def _batch(self, indices: Sequence[int]) -> dict[str, Any]:
        """The batch dict (docs/architecture.md) for ``indices``."""
        if self._eeg is None:  # opened lazily: one memmap handle per worker process
            flat = np.memmap(self.path / "eeg.f32", dtype=np.float32, mode="r", shape=(int(np.prod(self.shape)),))
            flat = flat.view(np.ndarray)  # plain views: np.memmap's per-slice bookkeeping costs more than the copy
            self._eeg = [recording_view(flat, r, self.shape[1]) for r in self.recordings]
        idx = np.asarray(indices, dtype=np.int64)
        # the cache is channel-major per recording: each window is C contiguous runs, copied straight into
        # [B, C, L] (pinned by the DataLoader on CUDA runs); no transpose
        eeg = torch.empty((len(idx), self.shape[1], self.length), dtype=torch.float32)
        out, L = eeg.numpy(), self.length
        for j, (r, s) in enumerate(zip(self.rec[idx].tolist(), self.start[idx].tolist())):
            out[j] = self._eeg[r][:, s:s + L]
        m = self.music[idx]
        order = np.argsort(m, kind="stable")  # memmapped mel: read in ascending order
        mel = np.empty((len(m),) + self.mel.shape[1:], dtype=np.float32)
        mel[order] = self.mel[m[order]]
        long = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
        return {
            "eeg": eeg,
            "clap": torch.from_numpy(np.ascontiguousarray(self.clap[m], dtype=np.float32)),
            "mel": torch.from_numpy(mel),
            "song": long(self.song[idx]),
            "genre": long(self.genre[idx]),
            "subject": long(self.subject[idx]),
            "recording": long(self.recording[idx]),  # index into the cache's recordings (the intervals' clusters)
            "segment": long(self.rows[idx]),
            "music": long(m),
            "stimulus": long(self.music_table[m, 0]),
            "start": long(self.music_table[m, 1]),
            "length": long(self.music_table[m, 2]),
            "channel_mask": torch.ones(eeg.shape[0], eeg.shape[1], dtype=torch.bool),
        }


class PrebatchedItems(SequenceABC):
    """A batch's items as a sequence of per-item dicts (views, built only when asked for) that also
    carries the batch dict itself, so :func:`collate_batch` has nothing to do."""

    def __init__(self, batch: dict[str, Any]):
        self.batch = batch

    def __len__(self) -> int:
        return len(self.batch["eeg"])

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return {k: v[i] for k, v in self.batch.items()}


def collate_batch(items: Any) -> dict[str, Any]:
    """The batch dict of :class:`PrebatchedItems`; ``default_collate`` for anything else."""
    if isinstance(items, PrebatchedItems):
        return items.batch
    return torch.utils.data.default_collate(items)

"""The torch ``Dataset`` of prepared windows: EEG windows sliced from the memmapped cache with their CLAP
targets, mels and ids, a whole batch gathered in one read (:class:`WindowDataset`, :func:`collate_batch`)."""
from __future__ import annotations

import math
import os
from collections.abc import Sequence as SequenceABC
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

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
        m = self.music
        # the int64 fields of the batch, one row each, per dataset row: a batch is one gather of [len(ID_FIELDS), B]
        self.ids = np.ascontiguousarray(np.stack([
            self.song, self.genre, self.subject, self.recording, self.rows, m,
            self.music_table[m, 0], self.music_table[m, 1], self.music_table[m, 2]]).astype(np.int64))
        self._eeg: list[np.ndarray] | None = None  # per recording [C, n] views of the memmap
        self._mel: np.ndarray | None = None  # the mel memmap as a plain ndarray view

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
            self._mel = np.asarray(self.mel).view(np.ndarray)
        idx = np.asarray(indices, dtype=np.int64)
        B = len(idx)
        # the cache is channel-major per recording: each window is C contiguous runs, copied straight into
        # [B, C, L] (pinned by the DataLoader on CUDA runs); no transpose. The copies are memory-bound and release
        # the GIL, so the batch is split over this process's torch threads (1 in a DataLoader worker). In a worker
        # the batch is written straight into shared memory (no second copy when it is sent to the main process).
        eeg = _empty((B, self.shape[1], self.length))
        mel = _empty((B,) + self._mel.shape[1:])
        ids = torch.from_numpy(self.ids[:, idx])  # [len(ID_FIELDS), B]
        m = self.ids[ID_FIELDS.index("music"), idx]
        jobs = [(self._copy_eeg, eeg.numpy(), self.rec[idx].tolist(), self.start[idx].tolist(), lo, hi)
                for lo, hi in _chunks(B, _threads())]
        jobs.append((np.take, self._mel, m, 0, mel.numpy(), "clip"))  # ids checked when the cache opened
        run_parallel(jobs)
        return {
            "eeg": eeg,
            "clap": torch.from_numpy(np.ascontiguousarray(self.clap[m], dtype=np.float32)),
            "mel": mel,
            # song, genre, subject, recording (index into the cache's recordings: the intervals' clusters), segment,
            # music, stimulus, start, length: rows of one [9, B] int64 tensor
            **dict(zip(ID_FIELDS, ids.unbind(0))),
            "channel_mask": torch.ones(B, self.shape[1], dtype=torch.bool),
        }

    def _copy_eeg(self, out: np.ndarray, rec: list[int], start: list[int], lo: int, hi: int) -> None:
        """``out[lo:hi] = `` the windows ``(rec, start)[lo:hi]`` (``out`` ``[B, C, L]``)."""
        L, views = self.length, self._eeg
        for j in range(lo, hi):
            s = start[j]
            out[j] = views[rec[j]][:, s:s + L]


#: the int64 ``[B]`` fields of a batch, in the row order of :attr:`WindowDataset.ids`
ID_FIELDS = ("song", "genre", "subject", "recording", "segment", "music", "stimulus", "start", "length")
_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, threads, pool): one pool per process


def _empty(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised float32 tensor; in a DataLoader worker in shared memory, as ``default_collate`` does."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.float32)
    storage = torch.UntypedStorage._new_shared(4 * math.prod(shape))
    return torch.empty(0, dtype=torch.float32).set_(storage, 0, shape)


def _threads() -> int:
    """Threads a batch gather may use: this process's torch threads (a DataLoader worker has 1), at most 8."""
    return max(1, min(8, torch.get_num_threads()))


def _chunks(n: int, k: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` ranges splitting ``range(n)`` into ``min(k, n)`` near-equal parts (one empty range if n = 0)."""
    k = max(1, min(k, n))
    step, extra = divmod(n, k)
    bounds = [i * step + min(i, extra) for i in range(k + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def run_parallel(jobs: list[tuple]) -> None:
    """Run ``fn(*args)`` for each ``(fn, *args)`` in ``jobs``: on this process's thread pool when there are more
    threads than one (the pool is made per process, so a forked worker never uses its parent's), else in order."""
    global _POOL
    k = _threads()
    if k == 1 or len(jobs) == 1:
        for fn, *args in jobs:
            fn(*args)
        return
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] != k:
        _POOL = (os.getpid(), k, ThreadPoolExecutor(k, thread_name_prefix="chanmusic-gather"))
    for f in [_POOL[2].submit(fn, *args) for fn, *args in jobs]:
        f.result()


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

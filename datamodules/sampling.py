"""Training order that survives a restart: one seeded permutation per epoch, resumable mid-epoch.

Lightning restores the model, optimizer, scheduler and loop counters from a checkpoint, but a plain
``DataLoader(shuffle=True)`` draws a fresh order from the global RNG and restarts its epoch from the first
batch, so a run resumed mid-epoch sees other batches than the uninterrupted run. Here:

- :class:`ResumableSampler` is a ``DistributedSampler``: the order of epoch ``e`` is ``randperm(n, seed + e)``
  and rank ``r`` of ``W`` takes every ``W``-th index. On one process ``W = 1``. So ``W`` ranks with batch
  ``B`` see, step for step, the windows of one process with batch ``W·B``; Lightning keeps a sampler that is
  already distributed (it would otherwise swap in its own) and calls ``set_epoch``.
- :class:`ResumableLoader` counts the batches it hands out and has ``state_dict`` / ``load_state_dict``, which
  Lightning stores in and restores from its checkpoints: a resumed epoch skips the batches already trained on
  (their windows are not even read). Its own generator (reseeded per epoch) gives the worker base seed, so
  loading data never draws from the global RNG that augmentations use.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` that can start its next pass at an offset into this rank's share (``start``)."""

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        start, self.start = self.start, 0
        return iter(indices[start:])


class ResumableLoader(DataLoader):
    """``DataLoader`` over a :class:`ResumableSampler` whose position is part of Lightning's checkpoints.

    ``state_dict() -> {"epoch", "batches"}``: the epoch and how many of its batches were handed out (an epoch
    handed out in full is saved as the start of the next one).
    """

    def __init__(self, dataset: Dataset, sampler: ResumableSampler, **kwargs: Any):
        kwargs.setdefault("generator", torch.Generator())
        super().__init__(dataset, sampler=sampler, **kwargs)
        self._handed_out = 0
        self._resume_at = 0

    def __iter__(self) -> Iterator[Any]:
        self.generator.manual_seed(self.sampler.seed + self.sampler.epoch)  # worker base seed, per epoch
        self._handed_out, self._resume_at = self._resume_at, 0
        for batch in super().__iter__():
            self._handed_out += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        epoch, batches = self.sampler.epoch, self._handed_out
        if batches >= len(self):
            epoch, batches = epoch + 1, 0
        return {"epoch": int(epoch), "batches": int(batches)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.set_epoch(int(state["epoch"]))
        self._resume_at = int(state["batches"])
        self.sampler.start = self._resume_at * self.batch_size

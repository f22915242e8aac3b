"""Train / validation / test splits over EEG windows, leakage-checked.

Modes (``SplitConfig.mode``):

- ``random`` (the paper's): per subject, windows are split at random (seeded) into test
  (``test_fraction``), validation (``val_fraction`` of the rest) and train. Every subject × song is one
  recording, so this lets a model learn a recording's noise; report it beside a no-music control.
- ``block``: the last ``test_fraction`` of each recording is test, the ``val_fraction`` before it is
  validation, with ``gap_s`` seconds dropped at each boundary. Weaker recording change (drift moves on).
- ``hearing``: NMED-H only: first hearings (``a``) train/validate, second hearings (``b``) test — a
  different recording of the same music, so recording fingerprints cannot carry over.
- ``subjects``: leave-subjects-out: ``test_subjects`` (or a seeded ``test_fraction`` of subjects) are
  test only. NMED is not fully crossed (NMED-H listeners heard different stimuli), see the README.

After assignment, any train or validation window that overlaps a test window of the same recording
(possible when stride < window) is dropped, and train windows overlapping validation ones too; the
counts are reported, never silently applied.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


@dataclass
class SplitConfig:
    mode: str = "random"
    test_fraction: float = 0.05
    val_fraction: float = 0.05
    seed: int = 42
    gap_s: float = 0.0
    test_subjects: Sequence[int] | None = None


@dataclass
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    dropped_overlap: int = 0
    dropped_gap: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        s = f"split: {len(self.train)} train / {len(self.val)} val / {len(self.test)} test windows"
        if self.dropped_overlap or self.dropped_gap:
            s += f"; dropped {self.dropped_overlap} overlapping and {self.dropped_gap} gap windows"
        return s


MODES = ("random", "block", "hearing", "subjects")


def split_windows(rec: np.ndarray, subject: np.ndarray, start: np.ndarray, length: np.ndarray,
                  cfg: SplitConfig, sfreq: float, hearing: np.ndarray | None = None) -> Split:
    """Assign each window (row) to train/val/test.

    Args:
        rec, subject, start, length: ``[S]`` int arrays, one row per window.
        hearing: ``[S]`` array of ``"a"``/``"b"`` (NMED-H), needed for ``mode="hearing"``.
    Returns:
        :class:`Split` of sorted row indices.
    """
    if cfg.mode not in MODES:
        raise ValueError(f"data.split: unknown mode {cfg.mode!r}; choose one of {MODES}")
    if not 0 < cfg.test_fraction < 1 or not 0 <= cfg.val_fraction < 1:
        raise ValueError("data.test_fraction must be in (0, 1) and data.val_fraction in [0, 1)")
    n = len(rec)
    if n == 0:
        raise ValueError("no windows to split: the recordings are shorter than one window (data.window_s)")
    rng = np.random.default_rng(cfg.seed)
    part = np.zeros(n, dtype=np.int8)  # 0 train, 1 val, 2 test, -1 dropped (gap)
    dropped_gap = 0
    notes: list[str] = []

    if cfg.mode == "random":
        for s in np.unique(subject):
            idx = rng.permutation(np.flatnonzero(subject == s))
            n_test = max(1, int(round(cfg.test_fraction * len(idx))))
            n_val = int(round(cfg.val_fraction * (len(idx) - n_test)))
            part[idx[:n_test]] = 2
            part[idx[n_test:n_test + n_val]] = 1
    elif cfg.mode == "block":
        gap = int(round(cfg.gap_s * sfreq))
        for r in np.unique(rec):
            idx = np.flatnonzero(rec == r)
            idx = idx[np.argsort(start[idx])]
            end = int(start[idx].max() + length[idx].max())
            t_test = end - cfg.test_fraction * end
            t_val = t_test - gap - cfg.val_fraction * t_test
            st, en = start[idx], start[idx] + length[idx]
            part[idx[st >= t_test]] = 2
            part[idx[(st >= t_val) & (en <= t_test - gap)]] = 1
            in_gap = ~(st >= t_test) & ~((st >= t_val) & (en <= t_test - gap)) & (en > t_val - gap)
            part[idx[in_gap]] = -1
            dropped_gap += int(in_gap.sum())
    elif cfg.mode == "hearing":
        if hearing is None or not set(np.unique(hearing)) >= {"a", "b"}:
            raise ValueError("data.split=hearing needs NMED-H data with both hearings (a and b): "
                             "set data.dataset=nmed-h")
        part[hearing == "b"] = 2
        idx = rng.permutation(np.flatnonzero(hearing == "a"))
        part[idx[:int(round(cfg.val_fraction * len(idx)))]] = 1
    elif cfg.mode == "subjects":
        subs = np.unique(subject)
        if cfg.test_subjects:
            test_subs = np.asarray(list(cfg.test_subjects))
            missing = set(test_subs.tolist()) - set(subs.tolist())
            if missing:
                raise ValueError(f"data.test_subjects: subjects {sorted(missing)} not in the data "
                                 f"(present: {subs.tolist()})")
        else:
            k = max(1, int(round(cfg.test_fraction * len(subs))))
            test_subs = rng.choice(subs, size=k, replace=False)
        if len(test_subs) >= len(subs):
            raise ValueError("data.split=subjects leaves no training subject")
        is_test = np.isin(subject, test_subs)
        part[is_test] = 2
        idx = rng.permutation(np.flatnonzero(~is_test))
        part[idx[:int(round(cfg.val_fraction * len(idx)))]] = 1
        notes.append(f"test subjects: {sorted(np.asarray(test_subs).tolist())}")

    dropped_overlap = _drop_overlaps(part, rec, start, length, held=2, victims=(0, 1))
    dropped_overlap += _drop_overlaps(part, rec, start, length, held=1, victims=(0,))
    split = Split(np.flatnonzero(part == 0), np.flatnonzero(part == 1), np.flatnonzero(part == 2),
                  dropped_overlap, dropped_gap, notes)
    for name in ("train", "test"):
        if len(getattr(split, name)) == 0:
            raise ValueError(f"the {name} split is empty ({split.summary()}): use more data, a larger "
                             f"data.test_fraction, or another data.split mode")
    return split


def _drop_overlaps(part: np.ndarray, rec: np.ndarray, start: np.ndarray, length: np.ndarray,
                   held: int, victims: tuple[int, ...]) -> int:
    """Mark as dropped (-1) every window of ``victims`` parts overlapping a ``held`` window of its recording."""
    dropped = 0
    for r in np.unique(rec[part == held]):
        in_rec = rec == r
        h = np.flatnonzero(in_rec & (part == held))
        hs, he = start[h], start[h] + length[h]
        v = np.flatnonzero(in_rec & np.isin(part, victims))
        vs, ve = start[v], start[v] + length[v]
        overlap = (vs[:, None] < he[None, :]) & (ve[:, None] > hs[None, :])
        bad = v[overlap.any(1)]
        part[bad] = -1
        dropped += len(bad)
    return dropped

"""Train / validation / test splits fixed in recording *time*, so every window length sees the same test spans.

The split never looks at windows to decide: it labels spans of each recording's time axis (seconds) as train,
validation or test, seeded per recording, and only then sorts the windows into them. Pretraining on 8-s windows
and alignment on 1-s windows of one experiment (same data, ``split_seed`` and ``span_s``) therefore hold out the
same EEG. A window belongs to a part when every span it touches has that part's label (a window straddling
two parts is dropped); a train window closer than ``gap_s`` to a validation or test span, and a validation
window closer than ``gap_s`` to a test span, is dropped too. Every drop is counted (:meth:`Split.summary`).

Modes (``SplitConfig.mode``):

- ``random`` (the paper's 95/5, in time): each recording's time axis is cut into ``span_s`` spans (from sample
  0; a tail shorter than a span joins the last one); a seeded ``test_fraction`` of them is test and a ``val_fraction`` of the rest validation (counts rounded at
  random, so fractions hold on average; at least one train span stays). The draw is seeded by ``seed`` and the
  recording's identity (``seed_key``: dataset, subject, stimulus), not by what else is selected. Recordings
  that share a ``group`` (NMED-H's two hearings of one stimulus by one subject) share their spans, so a song-time
  is on one side for both hearings.
- ``block``: the last ``test_fraction`` of each recording's time is test, the ``val_fraction`` before it
  validation. Weaker recording change (drift moves on).
- ``hearing``: NMED-H only: first hearings (``a``) train/validate, second hearings (``b``) test — a different
  recording of the same music, so recording fingerprints cannot carry over. Validation spans as in ``random``.
- ``subjects``: leave-subjects-out: ``test_subjects`` (global ids) or a seeded ``test_fraction`` of subjects are
  test only; validation spans are drawn in the other subjects' recordings.
- ``songs``: leave-songs-out (new music, :mod:`datamodules.song_split`): every recording of a ``test_songs`` song
  is test only; validation spans are drawn in the other songs' recordings.

``gap_s`` (``None`` = the data module's window length) applies in every mode; where train and test never share a
recording (hearing, subjects, songs) it only separates train from validation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from datamodules.selection import SelectionError
from datamodules.song_split import held_out_songs

TRAIN, VAL, TEST, DROPPED = 0, 1, 2, -1
MODES = ("random", "block", "hearing", "subjects", "songs")


@dataclass
class SplitConfig:
    mode: str = "random"
    test_fraction: float = 0.05
    val_fraction: float = 0.05
    seed: int = 42
    gap_s: float | None = 0.0
    test_subjects: Sequence[int] | None = None
    span_s: float = 8.0
    test_songs: Sequence[int] | None = None


@dataclass
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    dropped_overlap: int = 0  # windows straddling two parts
    dropped_gap: int = 0      # windows within gap_s of a held-out span
    notes: list[str] = field(default_factory=list)
    # per recording: span edges in samples [K + 1] and their labels [K] (TRAIN / VAL / TEST)
    spans: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def summary(self) -> str:
        s = f"split: {len(self.train)} train / {len(self.val)} val / {len(self.test)} test windows"
        if self.dropped_overlap or self.dropped_gap:
            s += (f"; dropped {self.dropped_overlap} windows straddling two parts and {self.dropped_gap} "
                  f"within the gap of a held-out span")
        return s

    def held_out_seconds(self, sfreq: float) -> dict[str, float]:
        """Seconds of recording time labelled val / test (before windows are fitted in)."""
        out = {"val": 0.0, "test": 0.0}
        for edges, lab in self.spans.values():
            d = np.diff(edges)
            out["val"] += float(d[lab == VAL].sum()) / sfreq
            out["test"] += float(d[lab == TEST].sum()) / sfreq
        return out


def split_windows(rec: np.ndarray, subject: np.ndarray, start: np.ndarray, length: np.ndarray,
                  cfg: SplitConfig, sfreq: float, hearing: np.ndarray | None = None, *,
                  n_samples: dict[int, int] | None = None, group: dict[int, int] | None = None,
                  seed_key: dict[int, Sequence[int]] | None = None, gap_default_s: float = 0.0,
                  song: dict[int, int] | None = None) -> Split:
    """Assign each window (row) to train/val/test through time spans (module docstring).

    Args:
        rec, subject, start, length: ``[S]`` int arrays, one row per window (start/length in samples).
        hearing: ``[S]`` array of ``"a"``/``"b"`` (NMED-H), needed for ``mode="hearing"``.
        n_samples: recording id -> its length in samples (default: the end of its last window).
        group: recording id -> span group (recordings of a group share spans; default: each its own).
        seed_key: span group -> ints that seed its draw with ``cfg.seed`` (default: the group id).
        gap_default_s: the gap when ``cfg.gap_s`` is ``None`` (the data module passes its window length).
        song: recording id -> its global song id, needed for ``mode="songs"``.
    Returns:
        :class:`Split` of sorted row indices, with the spans per recording.
    """
    if cfg.mode not in MODES:
        raise SelectionError(f"--data.split: unknown mode {cfg.mode!r} — choose one of {MODES}")
    if not 0 < cfg.test_fraction < 1 or not 0 <= cfg.val_fraction < 1:
        raise SelectionError("--data.test_fraction / data.val_fraction: must be in (0, 1) and [0, 1) — fix the value")
    if cfg.span_s <= 0:
        raise SelectionError(f"--data.span_s: {cfg.span_s} — must be a positive number of seconds")
    n = len(rec)
    if n == 0:
        raise SelectionError("--data.window_s: no windows to split (the recordings are shorter than one window) — "
                         "use shorter windows")
    rec, start, length = (np.asarray(x, dtype=np.int64) for x in (rec, start, length))
    recs = np.unique(rec)
    ends = {int(r): int((start[rec == r] + length[rec == r]).max()) for r in recs}
    n_samples = {int(r): int((n_samples or {}).get(int(r), ends[int(r)])) for r in recs}
    group = {int(r): int((group or {}).get(int(r), int(r))) for r in recs}
    gap_s = gap_default_s if cfg.gap_s is None else cfg.gap_s
    if gap_s < 0:
        raise SelectionError(f"--data.gap_s: {gap_s} — must be >= 0 seconds")
    gap = int(round(gap_s * sfreq))
    shortest = min(n_samples.values())
    if gap >= shortest:
        raise SelectionError(f"--data.gap_s: {gap_s:g} s is not shorter than the shortest recording "
                         f"({shortest / sfreq:.1f} s) — lower data.gap_s")
    rec_hearing = {}
    if hearing is not None:
        h = np.asarray(hearing)
        rec_hearing = {int(r): str(h[np.flatnonzero(rec == r)[0]]) for r in recs}
    rec_subject = {int(r): int(subject[np.flatnonzero(rec == r)[0]]) for r in recs}
    notes: list[str] = []
    span = max(1, int(round(cfg.span_s * sfreq)))
    rng_key = lambda g: [int(cfg.seed), *[int(x) for x in (seed_key or {}).get(g, (g,))]]  # noqa: E731

    def group_spans(groups: list[int], test_fraction: float) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Spans of every group (one subject's recordings): counts by systematic rounding over the subject (so its
        total is its fraction, to one span, and each recording gets the floor or ceiling of its share), which
        spans by each group's own seeded draw."""
        size = {g: max(n_samples[r] for r in recs if group[int(r)] == g) for g in groups}
        k = {g: max(1, size[g] // span) for g in groups}  # a tail shorter than a span joins the last span
        subj_of = {g: rec_subject[next(int(r) for r in recs if group[int(r)] == g)] for g in groups}
        n_test: dict[int, int] = {}
        n_val: dict[int, int] = {}
        for sub in sorted(set(subj_of.values())):
            gs = sorted((g for g in groups if subj_of[g] == sub), key=lambda g: tuple(rng_key(g)))
            u = np.random.default_rng([int(cfg.seed), 1, sub]).random(2)
            n_test.update(_systematic({g: test_fraction * k[g] for g in gs}, u[0], {g: k[g] - 1 for g in gs}))
            if test_fraction > 0 and not any(n_test[g] for g in gs):  # within-subject: every subject is tested
                big = max(gs, key=lambda g: k[g])
                n_test[big] = min(1, k[big] - 1)
            n_val.update(_systematic({g: cfg.val_fraction * (k[g] - n_test[g]) for g in gs}, u[1],
                                     {g: k[g] - 1 - n_test[g] for g in gs}))
        out = {}
        for g in groups:
            edges = np.append(np.arange(k[g]) * span, size[g])
            order = np.random.default_rng(rng_key(g)).permutation(k[g])
            lab = np.full(k[g], TRAIN, dtype=np.int8)
            lab[order[:n_test[g]]] = TEST
            lab[order[n_test[g]:n_test[g] + n_val[g]]] = VAL
            out[g] = (edges, lab)
        return out

    def whole_test(held: Callable[[int], bool]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Spans when whole recordings are held out (hearing, subjects, songs): a recording ``held`` is test from
        start to end; the others are split into training and validation spans by group."""
        kept = [r for r in n_samples if not held(r)]
        by_group = group_spans(sorted({group[r] for r in kept}), 0.0)
        out = {r: by_group[group[r]] for r in kept}
        out.update({r: (np.array([0, n_samples[r]]), np.array([TEST], dtype=np.int8)) for r in n_samples if held(r)})
        return out

    spans: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if cfg.mode == "random":
        by_group = group_spans(sorted(set(group.values())), cfg.test_fraction)
        spans = {r: by_group[group[r]] for r in group}
    elif cfg.mode == "block":
        for r, T in n_samples.items():
            t_test = int(round(T * (1 - cfg.test_fraction)))
            t_val = int(round(t_test * (1 - cfg.val_fraction)))
            edges = np.array(sorted({0, t_val, t_test, T}))
            lab = np.array([TRAIN if e < t_val else VAL if e < t_test else TEST for e in edges[:-1]], dtype=np.int8)
            spans[r] = (edges, lab)
    elif cfg.mode == "hearing":
        if not set(rec_hearing.values()) >= {"a", "b"}:
            have = sorted(set(rec_hearing.values()))
            raise SelectionError(f"--data.split: hearing needs NMED-H recordings of both hearings, but the selected "
                                 f"data hold hearing(s) {have} only — include nmed-h with --data.hearings [a, b]; if "
                                 f"that is set, the release's second-hearing (_b) files are missing under "
                                 f"--data.root (prepare warned of them): restore them, or use --data.split random")
        spans = whole_test(lambda r: rec_hearing[r] == "b")
    elif cfg.mode == "subjects":
        subs = np.unique(np.asarray(subject))
        if cfg.test_subjects:
            test_subs = np.asarray(list(cfg.test_subjects))
            missing = set(test_subs.tolist()) - set(subs.tolist())
            if missing:
                raise SelectionError(f"--data.test_subjects: subjects {sorted(missing)} not in the data "
                                 f"(present: {subs.tolist()}) — use ids of the selected subjects")
        else:
            k = max(1, int(round(cfg.test_fraction * len(subs))))
            test_subs = np.random.default_rng(cfg.seed).choice(subs, size=k, replace=False)
        if len(set(test_subs.tolist())) >= len(subs):
            raise SelectionError("--data.test_subjects: leaves no training subject — hold out fewer subjects")
        held = set(test_subs.tolist())
        spans = whole_test(lambda r: rec_subject[r] in held)
        notes.append(f"test subjects: {sorted(np.asarray(test_subs).tolist())}")
    elif cfg.mode == "songs":
        if song is None:
            raise SelectionError("--data.split: songs needs each recording's song — pass song= to split_windows")
        rec_song = {r: int(song[r]) for r in n_samples}
        held = held_out_songs(cfg.test_songs, rec_song)
        spans = whole_test(lambda r: rec_song[r] in held)
        notes.append(f"test songs: {sorted(held)}")

    part, straddle, in_gap = assign(rec, start, length, spans, gap)
    split = Split(np.flatnonzero(part == TRAIN), np.flatnonzero(part == VAL), np.flatnonzero(part == TEST),
                  int(straddle), int(in_gap), notes, spans)
    if len(split.train) == 0:  # an empty val / test part is reported by the loader that needs it
        raise SelectionError(f"--data.test_fraction: the train split is empty ({split.summary()}) — use more data, "
                         f"smaller data.test_fraction / data.val_fraction, or a smaller data.gap_s")
    return split


def _systematic(expected: dict[int, float], u: float, cap: dict[int, int]) -> dict[int, int]:
    """Integer counts whose running sums follow the expected ones (systematic rounding with offset ``u``)."""
    out, acc = {}, 0.0
    for g, e in expected.items():
        out[g] = max(0, min(cap[g], int(math.floor(acc + e + u) - math.floor(acc + u))))
        acc += e
    return out


def assign(rec: np.ndarray, start: np.ndarray, length: np.ndarray,
           spans: dict[int, tuple[np.ndarray, np.ndarray]], gap: int) -> tuple[np.ndarray, int, int]:
    """Part of each window from its recording's spans: ``[S]`` int8 (-1 dropped), #straddling, #in a gap."""
    part = np.full(len(rec), DROPPED, dtype=np.int8)
    straddle = in_gap = 0
    for r, (edges, lab) in spans.items():
        idx = np.flatnonzero(rec == r)
        if not len(idx):
            continue
        s, e = start[idx], start[idx] + length[idx]
        last = len(lab) - 1
        locate = lambda t: np.clip(np.searchsorted(edges, t, side="right") - 1, 0, last)  # noqa: E731
        i0, i1 = locate(s), locate(e - 1)
        # label counts over spans: count of label p in spans [i0, i1] = c[p][i1 + 1] - c[p][i0]
        c = {p: np.concatenate([[0], np.cumsum(lab == p)]) for p in (TRAIN, VAL, TEST)}
        same = np.zeros(len(idx), dtype=bool)
        p_of = np.full(len(idx), DROPPED, dtype=np.int8)
        for p in (TRAIN, VAL, TEST):
            whole = (c[p][i1 + 1] - c[p][i0]) == (i1 - i0 + 1)
            p_of[whole] = p
            same |= whole
        straddle += int((~same).sum())
        g0, g1 = locate(np.maximum(s - gap, 0)), locate(np.maximum(e + gap - 1, 0))
        near_val = (c[VAL][g1 + 1] - c[VAL][g0]) > 0
        near_test = (c[TEST][g1 + 1] - c[TEST][g0]) > 0
        bad = ((p_of == TRAIN) & (near_val | near_test)) | ((p_of == VAL) & near_test)
        in_gap += int(bad.sum())
        p_of[bad] = DROPPED
        part[idx] = p_of
    return part, straddle, in_gap

"""Identifications whose distractors are matched to what could otherwise give the answer away.

:class:`Identification` draws distractors by song / genre / segment only. Two shortcuts survive that:

- **Time since onset.** Audio sample 0 is EEG sample 0, so anything every listener shares as a function of time
  since the recording's onset (drift, drowsiness, onset transients, filter edges) predicts *when* a window is; with
  distractors taken at other times, knowing "when" already beats chance (id50, within_song). The time-matched
  identification (:class:`TimeMatchedIdentification`, ``id50_time``) takes its distractors from *other songs* at the
  same time since onset as the true segment, so every candidate is equally "early" or "late" and only the music
  can tell them apart.
- **Which dataset.** In a pooled test set (NMED-T + NMED-H) a distractor from the other dataset can be rejected by
  recognising the dataset (its recordings, its preprocessing) rather than the music. :class:`DatasetIdentification`
  reports ``chance_dataset`` beside ``chance``: the score of a guesser that knows the item's dataset and picks
  uniformly among the candidates of that dataset. With ``own_dataset=True`` (``genre_id``) distractors come only from
  the item's own dataset, so an item whose dataset has no other class (NMED-H: four songs of one genre) is left out.

Both are :class:`Identification`s and end in its summary (``Identification._summary``): the same keys (``mean``,
``n``, ``n_way``, ``chance``, ``ci95_low`` / ``ci95_high`` over recordings with ``ci95_over``, the window-level
``ci95_windows_low`` / ``_high``, ``draw_std``, ``repeats``, ``n_way_min`` / ``n_excluded`` where they apply) and
the same per-item results in ``last_items`` (hit, rank, candidates per segment and recording: ``items.csv``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from chanmusic.evaluation.metrics import Identification, MetricUnavailable, identification_ranks


def time_matched_hits(P: Tensor, A: Tensor, music: np.ndarray, song: np.ndarray, start: np.ndarray,
                      length: np.ndarray, n_way: int | None, tolerance: float, repeats: int, seed: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hits ``[repeats, n]``, candidates per item ``[n]`` and ranks of the true candidate ``[repeats, n]`` (1 =
    top; ties count against it) of the time-matched identification: each item's true segment against one segment
    of each of up to ``n_way - 1`` other songs whose start (time since onset) is within ``tolerance`` × the item's
    length of the true segment's start (drawn at random per repeat)."""
    n = len(P)
    if n < 2:
        raise MetricUnavailable(f"time-matched identification needs at least 2 test items, got {n}")
    uniq, first = np.unique(music, return_index=True)
    pos = {int(m): i for i, m in enumerate(uniq)}
    c_song, c_start = song[first], start[first].astype(np.float64)
    sims = (P @ A[torch.from_numpy(first)].T).numpy()
    rng = np.random.default_rng(seed)
    hits, ranks, n_cand = np.zeros((repeats, n)), np.ones((repeats, n)), np.ones(n, dtype=np.int64)
    for i in range(n):
        near = np.abs(c_start - float(start[i])) <= tolerance * float(length[i])
        pools = [np.flatnonzero(near & (c_song == s)) for s in np.unique(c_song[near]) if s != song[i]]
        k = len(pools) if n_way is None else min(n_way - 1, len(pools))
        n_cand[i] = k + 1
        if k == 0:
            continue
        t = pos[int(music[i])]
        for r in range(repeats):
            chosen = rng.choice(len(pools), size=k, replace=False)
            d = np.array([rng.choice(pools[j]) for j in chosen], dtype=np.int64)
            hits[r, i] = float(sims[i, t] > sims[i, d].max())
            ranks[r, i] = 1 + int((sims[i, d] >= sims[i, t]).sum())
    return hits, n_cand, ranks


class TimeMatchedIdentification(Identification):
    """N-way identification against other songs at the same time since onset (module docstring).

    ``update`` as :class:`Identification`'s. ``n_way=None``: every other song with a segment at that time;
    ``tolerance``: how far (in units of the item's length) a distractor's start may be from the true one's.
    """

    def __init__(self, n_way: int | None = None, repeats: int = 10, seed: int = 0, tolerance: float = 0.5,
                 **kwargs):
        super().__init__(50, "segment", repeats, seed, **kwargs)
        if n_way is not None and n_way < 2:
            raise ValueError("n_way must be at least 2 (or None: every other song at that time)")
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance}")
        self.n_way, self.tolerance = n_way, float(tolerance)

    def compute(self) -> dict[str, Tensor]:
        it = self._items()
        hits, n_cand, ranks = time_matched_hits(it["P"], it["A"], it["music"], it["song"], it["start"],
                                                it["length"], self.n_way, self.tolerance, self.repeats, self.seed)
        return self._summary(it, hits, n_cand, ranks, "time-matched identification: no test item has a distractor "
                             "(no other song has a test segment at the same time)")


class DatasetIdentification(Identification):
    """Song / genre identification that knows where its candidates come from (module docstring).

    ``update(..., segment, dataset [B], recording [B])`` (``dataset``: an int per item naming its dataset;
    ``recording``: the interval's clusters, as :class:`Identification`'s). ``own_dataset``: draw
    distractors from the item's own dataset only. ``compute()`` adds ``chance_dataset``.
    """

    _extra = ["dataset"]

    def __init__(self, distractors: str = "song", own_dataset: bool = False, repeats: int = 10, seed: int = 0,
                 **kwargs):
        if distractors not in ("song", "genre"):
            raise ValueError(f"distractors must be song or genre, got {distractors!r}")
        super().__init__(None, distractors, repeats, seed, **kwargs)
        self.own_dataset = own_dataset
        self.add_state("dataset", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, targets: Tensor, music: Tensor, song: Tensor, genre: Tensor,  # type: ignore[override]
               stimulus: Tensor, start: Tensor, length: Tensor, segment: Tensor | None = None,
               dataset: Tensor | None = None, recording: Tensor | None = None) -> None:
        super().update(preds, targets, music, song, genre, stimulus, start, length, segment, recording)
        d = torch.zeros(len(preds), dtype=torch.long) if dataset is None else torch.as_tensor(dataset)
        self.dataset.append(d.to(self.device).long().reshape(-1))

    def compute(self) -> dict[str, Tensor]:
        it = self._items()
        key = it["song"] if self.distractors == "song" else it["genre"]
        ds = it["dataset"]
        n = len(ds)
        hits, ranks, n_cand = np.zeros((self.repeats, n)), np.ones((self.repeats, n)), np.ones(n, dtype=np.int64)
        groups = [np.flatnonzero(ds == d) for d in np.unique(ds)] if self.own_dataset else [np.arange(n)]
        for g in groups:
            if len(g) < 2:
                continue
            h, c, rk = identification_ranks(it["P"][torch.from_numpy(g)], it["A"][torch.from_numpy(g)],
                                            *(it[k][g] for k in self._FACTS[:6]), None, self.distractors,
                                            self.repeats, self.seed)
            hits[:, g], n_cand[g], ranks[:, g] = h, c, rk
        where = " within its own dataset" if self.own_dataset else ""
        out = self._summary(it, hits, n_cand, ranks, f"{self.distractors} identification{where}: no test item has a "
                            f"distractor ({n} test items)")
        # a guesser that knows the dataset: 1 / (the true class + the distractors of the item's own dataset)
        classes = {d: set(key[ds == d].tolist()) for d in np.unique(ds)}
        own = np.array([len(classes[ds[i]]) for i in range(n)])
        ok = n_cand >= 2
        out["chance_dataset"] = torch.tensor(float(np.mean(1.0 / np.minimum(own[ok], n_cand[ok]))))
        return out

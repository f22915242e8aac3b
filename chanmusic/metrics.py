"""Evaluation metrics as torchmetrics ``Metric``s (state + ``update`` / ``compute``), usable outside Lightning.

Identification (DESIGN.md): for each test item, its true audio embedding competes with N-1 distractor
audio embeddings; a hit is the true one scoring the highest cosine with the item's prediction. Repeated
with a seeded generator; mean ± std (ddof=0) over repeats. Distractor rules by ``distractors``:

- ``"segment"`` (``id50``): other *distinct* music segments of the test set (the same song window heard
  by another subject is the same audio, never a distractor), excluding any that overlaps the target in
  time within the same stimulus.
- ``"song"`` (``song14``) / ``"genre"`` (``genre10``): one random test segment from each other song /
  genre present (at most ``n_way - 1`` of them), so N = number of songs / genres present.
- ``"within_song"``: other non-overlapping segments of the *same stimulus* only, so song-level cues
  (and song-level recording fingerprints) cannot help.

Chance is the mean of ``1 / n_candidates`` over items.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from torchmetrics import Metric

DISTRACTORS = ("segment", "song", "genre", "within_song")


class Identification(Metric):
    """N-way identification of the heard music segment from a predicted embedding.

    ``update(preds [B, D], targets [B, D], music [B], song [B], genre [B], stimulus [B], start [B], length [B],
    segment [B] | None)``; ``compute() -> {"mean", "std", "n", "chance"}`` (tensors).

    ``segment`` (the EEG window's id) makes the result independent of how the test set was dealt out:
    items seen more than once (``DistributedSampler`` pads the last batch with repeats under DDP) count
    once, and items are put in segment order before the seeded draws, so 1 and N processes agree.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, n_way: int = 50, distractors: str = "segment", repeats: int = 10, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if distractors not in DISTRACTORS:
            raise ValueError(f"distractors must be one of {DISTRACTORS}, got {distractors!r}")
        if n_way < 2:
            raise ValueError("n_way must be at least 2")
        self.n_way, self.distractors, self.repeats, self.seed = n_way, distractors, repeats, seed
        for name in ("preds", "targets", "music", "song", "genre", "stimulus", "start", "length", "segment"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, targets: Tensor, music: Tensor, song: Tensor, genre: Tensor,
               stimulus: Tensor, start: Tensor, length: Tensor, segment: Tensor | None = None) -> None:
        if segment is None:  # unknown ids: -1, never deduplicated
            segment = torch.full((len(preds),), -1, dtype=torch.long)
        self.preds.append(F.normalize(preds.detach().float(), dim=-1))
        self.targets.append(F.normalize(targets.detach().float(), dim=-1))
        for name, v in (("music", music), ("song", song), ("genre", genre), ("stimulus", stimulus),
                        ("start", start), ("length", length), ("segment", segment)):
            getattr(self, name).append(torch.as_tensor(v, device=self.device).long().reshape(-1))

    def compute(self) -> dict[str, Tensor]:
        cat = lambda x: (torch.cat(x) if isinstance(x, list) else x).cpu()  # noqa: E731
        P, A = cat(self.preds), cat(self.targets)
        music, song, genre = cat(self.music).numpy(), cat(self.song).numpy(), cat(self.genre).numpy()
        stim, start, length = cat(self.stimulus).numpy(), cat(self.start).numpy(), cat(self.length).numpy()
        seg = cat(self.segment).numpy()
        if len(seg) and (seg >= 0).all():  # each window once, in segment order (see the class docstring)
            _, keep = np.unique(seg, return_index=True)
            P, A = P[torch.from_numpy(keep)], A[torch.from_numpy(keep)]
            music, song, genre, stim, start, length = (x[keep] for x in (music, song, genre, stim, start, length))
        scores, chance = identification_scores(P, A, music, song, genre, stim, start, length, self.n_way,
                                               self.distractors, self.repeats, self.seed)
        return {"mean": torch.tensor(float(np.mean(scores))), "std": torch.tensor(float(np.std(scores))),
                "n": torch.tensor(len(P)), "chance": torch.tensor(chance)}


def identification_scores(P: Tensor, A: Tensor, music: np.ndarray, song: np.ndarray, genre: np.ndarray,
                          stim: np.ndarray, start: np.ndarray, length: np.ndarray, n_way: int,
                          distractors: str, repeats: int, seed: int) -> tuple[np.ndarray, float]:
    """Per-repeat accuracy ``[repeats]`` and chance level; see :class:`Identification`.

    P, A: ``[n, D]`` L2-normalised predictions and true audio embeddings.
    """
    n = len(P)
    if n < 2:
        raise ValueError(f"identification needs at least 2 test items, got {n}")
    # one candidate per distinct music segment
    uniq, first = np.unique(music, return_index=True)
    cand_emb = A[first]  # [M, D]
    cand_pos = {int(m): i for i, m in enumerate(uniq)}
    c_song, c_genre, c_stim = song[first], genre[first], stim[first]
    c_start, c_end = start[first], start[first] + length[first]
    sims = (P @ cand_emb.T).numpy()  # [n, M]
    rng = np.random.default_rng(seed)
    hits = np.zeros((repeats, n))
    n_cand = np.zeros(n)
    for i in range(n):
        t = cand_pos[int(music[i])]
        overlap = (c_stim == stim[i]) & (c_start < start[i] + length[i]) & (c_end > start[i])
        if distractors == "segment":
            pools = [np.flatnonzero(~overlap)]
            k = n_way - 1
        elif distractors == "within_song":
            pools = [np.flatnonzero(~overlap & (c_stim == stim[i]))]
            k = n_way - 1
        else:
            key = c_song if distractors == "song" else c_genre
            own = song[i] if distractors == "song" else genre[i]
            others = [g for g in np.unique(key) if g != own]
            pools = [np.flatnonzero((key == g) & ~overlap) for g in others]
            pools = [p for p in pools if len(p)]
            k = min(n_way - 1, len(pools))
        for r in range(repeats):
            if distractors in ("segment", "within_song"):
                pool = pools[0]
                d = rng.choice(pool, size=min(k, len(pool)), replace=False) if len(pool) else pool
            else:
                chosen = rng.choice(len(pools), size=k, replace=False) if k else []
                d = np.array([rng.choice(pools[j]) for j in chosen], dtype=np.int64)
            hits[r, i] = float(len(d) == 0 or sims[i, t] > sims[i, d].max())
            n_cand[i] = len(d) + 1
    if (n_cand < 2).any():
        raise ValueError(f"{distractors} identification: {(n_cand < 2).sum()} of {n} test items have no valid "
                         f"distractor (too few distinct test segments/songs): use a larger test split")
    return hits.mean(1), float(np.mean(1.0 / n_cand))


def summarize(values: np.ndarray | list[float], chance: float | None = None) -> dict[str, float | int | None]:
    """``{"mean", "std", "n", "chance"}`` of per-item or per-repeat values (std with ddof=0)."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size), "chance": chance}

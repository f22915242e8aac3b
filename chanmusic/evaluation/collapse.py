"""Spread of a set of embeddings: is an encoder's output constant (collapsed)?

Two numbers of the test embeddings ``E [W, D]`` (one row per test window, the aligned embedding a run is scored on):

- **mean pairwise cosine distance** ``mean_{i≠j} (1 − cos(e_i, e_j))``, computed in O(W·D) from the sum of the unit
  vectors ``u_i``: ``mean_{i≠j} cos = (‖Σ u_i‖² − W) / (W (W − 1))``. 0 for a constant encoder; ≈ 1 for directions
  spread at random; it falls towards 0 when one shared direction dominates every embedding, which is how an
  InfoNCE model that finds nothing to read in its input ends up (a constant embedding is the loss's best answer
  to uninformative input: every logit equal, loss = log B).
- **effective rank** (Roy & Vetterli 2007, as RankMe, Garrido et al. 2023, uses it for collapse): ``exp(H(p))``
  with ``p_k = σ_k / Σ σ`` the normalised singular values of ``E`` (not centred, so a large shared offset counts
  as the one dimension it is). 1 for a constant encoder, up to ``min(W, D)``.

A run is **collapsed** when the mean pairwise cosine distance is below :data:`COLLAPSE_SPREAD`, or the effective rank
below :data:`COLLAPSE_RANK`. Measured on the synthetic quick comparison (test windows, aligned embeddings): the linear
reference 1.0, the channel-oriented model 0.16, LaBraM 0.22 — EEGPT 2e-8 and CBraMod 7e-4 before the fixes of
``docs/encoders.md`` (their song dissimilarity matrices were flat).

:class:`EmbeddingSpread` is the torchmetrics form (embeddings gathered over ranks, computed once at the end).
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

COLLAPSE_SPREAD = 1e-2
COLLAPSE_RANK = 1.5

__all__ = ["COLLAPSE_SPREAD", "COLLAPSE_RANK", "cosine_distance_per_item", "mean_pairwise_cosine_distance", "effective_rank",
           "embedding_spread", "is_collapsed", "EmbeddingSpread", "metrics_entries"]


def cosine_distance_per_item(emb: Tensor) -> Tensor:
    """``d_i = mean_{j≠i} (1 − cos(e_i, e_j))`` for each row of ``emb [W, D]`` (W ≥ 2) -> ``[W]`` float64; a zero row
    counts as orthogonal to all. Their mean is the mean pairwise cosine distance."""
    e = torch.as_tensor(emb).detach().to(torch.float64)
    w = e.shape[0]
    if w < 2:
        raise ValueError(f"need at least 2 embeddings, got {w}")
    u = torch.nn.functional.normalize(e, dim=1)
    cos_to_others = (u @ u.sum(0) - (u * u).sum(1)) / (w - 1)
    return 1.0 - cos_to_others


def mean_pairwise_cosine_distance(emb: Tensor) -> float:
    """``mean_{i≠j} (1 − cos(e_i, e_j))`` of ``emb [W, D]`` (W ≥ 2), in O(W·D)."""
    return float(cosine_distance_per_item(emb).mean())


def effective_rank(emb: Tensor, eps: float = 1e-12) -> float:
    """Roy & Vetterli's effective rank ``exp(−Σ p_k log p_k)``, ``p_k = σ_k / Σ σ`` of ``emb [W, D]`` (not centred)."""
    e = torch.as_tensor(emb).detach().to(torch.float64)
    s = torch.linalg.svdvals(e)
    if float(s.sum()) <= eps:
        return 1.0  # all zero: one (degenerate) direction at most
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def is_collapsed(spread: float, rank: float) -> bool:
    return spread < COLLAPSE_SPREAD or rank < COLLAPSE_RANK


def embedding_spread(emb: Tensor) -> dict[str, float | int | bool]:
    """``{"spread": mean pairwise 1 − cos, "spread_std": its std over windows, "rank": effective rank, "n": W,
    "collapsed": bool}`` of ``emb [W, D]``."""
    d = cosine_distance_per_item(emb)
    spread, rank = float(d.mean()), effective_rank(emb)
    return {"spread": spread, "spread_std": float(d.std(unbiased=False)), "rank": rank, "n": int(emb.shape[0]),
            "collapsed": is_collapsed(spread, rank)}


class EmbeddingSpread(Metric):
    """Collects embeddings ``[B, D]`` over ``update`` calls (and ranks); ``compute`` -> :func:`embedding_spread`
    as tensors (``spread``, ``rank``, ``n``, ``collapsed``)."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("emb", default=[], dist_reduce_fx="cat")

    def update(self, emb: Tensor) -> None:
        self.emb.append(emb.detach().float())

    def compute(self) -> dict[str, Tensor]:
        emb = torch.cat(self.emb) if isinstance(self.emb, list) else self.emb
        r = embedding_spread(emb)
        return {k: torch.tensor(float(v)) for k, v in r.items()}


def metrics_entries(spread: dict[str, float | int | bool], prefix: str = "embedding") -> dict[str, dict]:
    """``metrics.json`` entries of :func:`embedding_spread`'s result: ``<prefix>_spread`` (mean pairwise 1 − cos,
    ``std`` over test windows of each window's mean distance to the others, with ``collapsed``) and
    ``<prefix>_rank`` (effective rank: one number of the whole set, ``std`` 0 and ``repeats`` 1). ``embedding``:
    the aligned embeddings; ``encoder``: the encoder's pooled output before the head."""
    n, collapsed = int(spread["n"]), bool(spread["collapsed"])
    return {
        f"{prefix}_spread": {"mean": float(spread["spread"]), "std": float(spread["spread_std"]), "n": n,
                             "n_way": None, "chance": None,
                             "collapsed": collapsed, "threshold": COLLAPSE_SPREAD,
                             "what": f"mean pairwise 1 - cos of the test {prefix} outputs"},
        f"{prefix}_rank": {"mean": float(spread["rank"]), "std": 0.0, "repeats": 1, "n": n, "n_way": None,
                           "chance": None,
                           "collapsed": collapsed, "threshold": COLLAPSE_RANK,
                           "what": f"effective rank (Roy & Vetterli) of the test {prefix} outputs"},
    }

"""Evaluation metrics as torchmetrics ``Metric``s (state + ``update`` / ``compute``), usable outside Lightning.

Identification (the project's evaluation protocol): for each test item, its true audio embedding competes with N-1 distractor
audio embeddings; a hit is the true one scoring the highest cosine with the item's prediction. Repeated
with a seeded generator. Distractor rules by ``distractors``:

- ``"segment"`` (``id50``): other *distinct* music segments of the test set (the same song window heard
  by another subject is the same audio, never a distractor), excluding any that overlaps the target in
  time within the same stimulus.
- ``"song"`` (``song_id``) / ``"genre"`` (``genre_id``): one random test segment from each other song /
  genre present (at most ``n_way - 1``; ``n_way=None``: all), so N = number of songs / genres present.
- ``"within_song"``: other non-overlapping segments of the *same stimulus* only, so song-level cues
  (and song-level recording fingerprints) cannot help.

``compute()`` gives the mean over items of each item's hit rate over the repeats, ``n`` (items scored),
``n_way`` (the number of candidates actually used: the largest; ``n_way_min`` where items had fewer),
``chance`` (mean of ``1 / n_candidates``), ``ci95_low`` / ``ci95_high`` (the seeded bootstrap 95% interval over
*recordings* when ``recording`` ids were given, else over items; :mod:`chanmusic.evaluation.intervals`),
``ci95_windows_low`` / ``_high`` (the window-level interval, for comparison), ``ci95_over`` (1: recordings, 0:
windows) and ``draw_std`` (spread of the repeats' accuracies: NOT an uncertainty; also under its old name ``std``
for in-process callers). After ``compute()``, :attr:`Identification.last_items` holds the per-item results
(segment, recording, hit rate over the repeats, mean rank of the true candidate, candidates): what the per-item
file (``chanmusic.results.items_file``) is written from. Items with no possible distractor
are left out and counted (``n_excluded``); when no item has one — e.g. genre identification on NMED-H alone,
whose four songs share one genre — ``compute()`` raises :class:`MetricUnavailable` with the reason, which the
stages write as ``null``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from torchmetrics import Metric

from chanmusic.evaluation.intervals import bootstrap_ci95, cluster_bootstrap

DISTRACTORS = ("segment", "song", "genre", "within_song")


class MetricUnavailable(ValueError):
    """A metric that cannot be formed on this data (its message is the reason written beside ``null``)."""


def reset_metric(metric: Metric) -> None:
    """``metric.reset()``, also after a ``compute()`` that raised: torchmetrics then leaves the states synced
    (concatenated across processes), and a plain reset fails under DDP."""
    if getattr(metric, "_is_synced", False):
        metric.unsync()
    metric.reset()


class Identification(Metric):
    """N-way identification of the heard music segment from a predicted embedding.

    ``update(preds [B, D], targets [B, D], music [B], song [B], genre [B], stimulus [B], start [B], length [B],
    segment [B] | None, recording [B] | None)``; ``compute() -> {"mean", "n", "n_way", "chance", "ci95_low", "ci95_high", "draw_std", ...}``
    (tensors; see the module docstring). ``n_way=None``: every class present (song / genre modes).

    ``segment`` (the EEG window's id) makes the result independent of how the test set was dealt out:
    items seen more than once (``DistributedSampler`` pads the last batch with repeats under DDP) count
    once, and items are put in segment order before the seeded draws, so 1 and N processes agree.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, n_way: int | None = 50, distractors: str = "segment", repeats: int = 10, seed: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        if distractors not in DISTRACTORS:
            raise ValueError(f"distractors must be one of {DISTRACTORS}, got {distractors!r}")
        if n_way is not None and n_way < 2:
            raise ValueError("n_way must be at least 2 (or None: every class present)")
        if n_way is None and distractors not in ("song", "genre"):
            raise ValueError("n_way=None (every class present) is for song / genre identification")
        self.n_way, self.distractors, self.repeats, self.seed = n_way, distractors, repeats, seed
        for name in ("preds", "targets", "music", "song", "genre", "stimulus", "start", "length", "segment",
                     "recording"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.last_items: dict[str, np.ndarray] | None = None

    def update(self, preds: Tensor, targets: Tensor, music: Tensor, song: Tensor, genre: Tensor,
               stimulus: Tensor, start: Tensor, length: Tensor, segment: Tensor | None = None,
               recording: Tensor | None = None) -> None:
        if segment is None:  # unknown ids: -1, never deduplicated
            segment = torch.full((len(preds),), -1, dtype=torch.long)
        if recording is None:  # unknown recordings: -1, the interval falls back to windows
            recording = torch.full((len(preds),), -1, dtype=torch.long)
        self.preds.append(F.normalize(preds.detach().float(), dim=-1))
        self.targets.append(F.normalize(targets.detach().float(), dim=-1))
        for name, v in (("music", music), ("song", song), ("genre", genre), ("stimulus", stimulus),
                        ("start", start), ("length", length), ("segment", segment), ("recording", recording)):
            getattr(self, name).append(torch.as_tensor(v, device=self.device).long().reshape(-1))

    _FACTS = ["music", "song", "genre", "stimulus", "start", "length", "segment", "recording"]
    _extra: list[str] = []  # further per-item states a subclass keeps (read back like the facts)

    def _items(self) -> dict[str, np.ndarray | Tensor]:
        """The states read back once per window, in segment order (class docstring): ``P`` / ``A`` ``[n, D]`` and
        each fact ``[n]``."""
        cat = lambda x: (torch.cat(x) if isinstance(x, list) else x).cpu()  # noqa: E731
        out: dict[str, np.ndarray | Tensor] = {"P": cat(self.preds), "A": cat(self.targets)}
        out.update({k: cat(getattr(self, k)).numpy() for k in self._FACTS + self._extra})
        seg = out["segment"]
        if len(seg) and (seg >= 0).all():  # each window once, in segment order (see the class docstring)
            keep = np.unique(seg, return_index=True)[1]
            out = {k: (v[torch.from_numpy(keep)] if isinstance(v, Tensor) else v[keep]) for k, v in out.items()}
        return out

    def compute(self) -> dict[str, Tensor]:
        it = self._items()
        hits, n_cand, ranks = identification_ranks(it["P"], it["A"], *(it[k] for k in self._FACTS[:6]), self.n_way,
                                                   self.distractors, self.repeats, self.seed)
        what = {"song": "song", "genre": "genre"}.get(self.distractors)
        present = len(np.unique(it[what])) if what else None
        return self._summary(it, hits, n_cand, ranks, f"{self.distractors} identification: no test item has a distractor"
                             + (f" (only {present} {what}{'s' if present != 1 else ''} present in the test set)"
                                if what else f" ({len(it['P'])} test items, too few distinct non-overlapping segments)"))

    def _summary(self, it: dict[str, np.ndarray | Tensor], hits: np.ndarray, n_cand: np.ndarray, ranks: np.ndarray,
                 unavailable: str) -> dict[str, Tensor]:
        """``compute()``'s result from hits and ranks ``[repeats, n]`` and candidates ``[n]`` of the items ``it``
        (:meth:`_items`), and :attr:`last_items`; every identification ends here. Items with fewer than two
        candidates are left out and counted; none left: :class:`MetricUnavailable` (``unavailable``)."""
        seg, rec = np.asarray(it["segment"]), np.asarray(it["recording"])
        ok = n_cand >= 2
        if not ok.any():
            raise MetricUnavailable(unavailable)
        per_item = hits[:, ok].mean(0)
        self.last_items = {"segment": seg, "recording": rec, "hit": np.where(ok, hits.mean(0), np.nan),
                           "rank": np.where(ok, ranks.mean(0), np.nan), "candidates": n_cand}
        wlo, whi = bootstrap_ci95(per_item, self.seed)
        by_rec = len(rec) > 0 and bool((rec >= 0).all())
        ci = cluster_bootstrap(per_item, rec[ok], self.seed) if by_rec else None
        lo, hi = (ci.low, ci.high) if ci is not None else (wlo, whi)
        draws = hits[:, ok].mean(1)
        out = {"mean": float(per_item.mean()), "n": int(ok.sum()), "n_way": int(n_cand[ok].max()),
               "chance": float(np.mean(1.0 / n_cand[ok])), "ci95_low": lo, "ci95_high": hi,
               "ci95_windows_low": wlo, "ci95_windows_high": whi, "ci95_over": int(by_rec),
               "draw_std": float(draws.std()), "std": float(draws.std()), "repeats": self.repeats}
        if n_cand[ok].min() != n_cand[ok].max():
            out["n_way_min"] = int(n_cand[ok].min())
        if not ok.all():
            out["n_excluded"] = int((~ok).sum())
        return {k: torch.tensor(v) for k, v in out.items()}


def identification_ranks(P: Tensor, A: Tensor, music: np.ndarray, song: np.ndarray, genre: np.ndarray,
                         stim: np.ndarray, start: np.ndarray, length: np.ndarray, n_way: int | None,
                         distractors: str, repeats: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hits ``[repeats, n]`` (1.0 = the true candidate scored highest), candidates per item ``[n]`` (1 = no
    distractor: that item's hits are meaningless) and the rank ``[repeats, n]`` of the true candidate among its
    draw (1 = top; ties count against it); see :class:`Identification`. P, A: ``[n, D]`` L2-normalised
    predictions and true audio embeddings."""
    n = len(P)
    if n < 2:
        raise MetricUnavailable(f"identification needs at least 2 test items, got {n}")
    # one candidate per distinct music segment
    uniq, first = np.unique(music, return_index=True)
    cand_emb = A[first]  # [M, D]
    cand_pos = {int(m): i for i, m in enumerate(uniq)}
    c_song, c_genre, c_stim = song[first], genre[first], stim[first]
    c_start, c_end = start[first], start[first] + length[first]
    sims = (P @ cand_emb.T).numpy()  # [n, M]
    rng = np.random.default_rng(seed)
    hits = np.zeros((repeats, n))
    ranks = np.ones((repeats, n))
    n_cand = np.zeros(n, dtype=np.int64)
    limit = n_way if n_way is not None else len(uniq) + 1
    for i in range(n):
        t = cand_pos[int(music[i])]
        overlap = (c_stim == stim[i]) & (c_start < start[i] + length[i]) & (c_end > start[i])
        if distractors == "segment":
            pools = [np.flatnonzero(~overlap)]
            k = limit - 1
        elif distractors == "within_song":
            pools = [np.flatnonzero(~overlap & (c_stim == stim[i]))]
            k = limit - 1
        else:
            key = c_song if distractors == "song" else c_genre
            own = song[i] if distractors == "song" else genre[i]
            others = [g for g in np.unique(key) if g != own]
            pools = [np.flatnonzero((key == g) & ~overlap) for g in others]
            pools = [p for p in pools if len(p)]
            k = min(limit - 1, len(pools))
        for r in range(repeats):
            if distractors in ("segment", "within_song"):
                pool = pools[0]
                d = rng.choice(pool, size=min(k, len(pool)), replace=False) if len(pool) else pool
            else:
                chosen = rng.choice(len(pools), size=k, replace=False) if k else []
                d = np.array([rng.choice(pools[j]) for j in chosen], dtype=np.int64)
            hits[r, i] = float(len(d) > 0 and sims[i, t] > sims[i, d].max())
            ranks[r, i] = 1 + int((sims[i, d] >= sims[i, t]).sum()) if len(d) else 1
            n_cand[i] = len(d) + 1
    return hits, n_cand, ranks


def summarize(values: np.ndarray | list[float], chance: float | None = None, seed: int = 0
              ) -> dict[str, float | int | None | list]:
    """``{"mean", "std", "n", "chance", "ci95"}`` of per-item values (std with ddof=0; ci95: bootstrap)."""
    v = np.asarray(values, dtype=np.float64)
    lo, hi = bootstrap_ci95(v, seed)
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size), "chance": chance, "ci95": [lo, hi]}


# ----------------------------------------------------------------------------------------------------------------
# Reconstruction metrics (chanmusic.stages.reconstruct): one value per generated test item, mean ± std (ddof=0) over items.
#
# Like Identification, each keeps the EEG window id (``segment``) of its items, so an item seen twice (DDP padding)
# counts once; ``segment=None`` (ids unknown) keeps every item. ``compute()`` returns tensors
# ``{"mean", "std", "n", "chance", "ci95_low", "ci95_high"}`` (std over items; the interval is the bootstrap over items);
# ``chance`` is NaN where the metric has no chance level.
# ----------------------------------------------------------------------------------------------------------------

PSNR_MAX_DB = 100.0  #: PSNR cap: identical spectrograms give +inf, reported as this value so JSON stays standard


def crop_frames(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Crop two ``[..., F, N]`` spectrograms to the shorter one's number of frames (last axis)."""
    n = min(a.shape[-1], b.shape[-1])
    return a[..., :n], b[..., :n]


def joint_minmax(a: Tensor, b: Tensor, eps: float = 1e-8) -> tuple[Tensor, Tensor]:
    """Scale each pair ``(a[i], b[i])`` jointly to [0, 1]: ``(x - lo) / (hi - lo)``, with ``lo`` / ``hi`` the
    minimum / maximum over *both* items of the pair (so their difference is kept, only its unit changes).

    This is the SSIM/PSNR data range convention of chanmusic: log-mel values have no fixed range (AudioLDM's floor
    is log(1e-5) ≈ -11.5, the top depends on loudness), so every (generated, true) pair is put on a common [0, 1]
    scale and SSIM/PSNR use ``data_range = 1.0``. A constant pair (hi == lo) maps to zeros.
    """
    dims = tuple(range(1, a.dim()))
    lo = torch.minimum(a.amin(dim=dims, keepdim=True), b.amin(dim=dims, keepdim=True))
    hi = torch.maximum(a.amax(dim=dims, keepdim=True), b.amax(dim=dims, keepdim=True))
    scale = (hi - lo).clamp_min(eps)
    return (a - lo) / scale, (b - lo) / scale


def _mel_pairs(gen: Tensor, true: Tensor) -> tuple[Tensor, Tensor]:
    if gen.dim() != 3 or true.dim() != 3 or gen.shape[:2] != true.shape[:2]:
        raise ValueError(f"expected mels [B, F, N] with equal B and F, got {tuple(gen.shape)} and {tuple(true.shape)}")
    g, t = crop_frames(gen.float(), true.float().to(gen.device))
    g, t = joint_minmax(g, t)
    return g[:, None], t[:, None]  # [B, 1, F, N]


def mel_ssim(gen: Tensor, true: Tensor) -> Tensor:
    """Per-item SSIM ``[B]`` of log-mels ``[B, F, N]``: frames cropped to equal length, each pair min-max scaled
    jointly to [0, 1] (:func:`joint_minmax`), torchmetrics SSIM with ``data_range=1.0`` and its defaults (Gaussian
    kernel 11, sigma 1.5, k1 0.01, k2 0.03)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    g, t = _mel_pairs(gen, true)
    with torch.autocast(g.device.type, enabled=False):  # float32 convolutions even inside a bf16/fp16 step
        return structural_similarity_index_measure(g, t, data_range=1.0, reduction="none").reshape(-1)


def mel_psnr(gen: Tensor, true: Tensor, max_db: float = PSNR_MAX_DB) -> Tensor:
    """Per-item PSNR ``[B]`` in dB of log-mels ``[B, F, N]`` on the same [0, 1] scale as :func:`mel_ssim`
    (``10 log10(1 / MSE)``), capped at ``max_db`` (identical pairs would be +inf)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    g, t = _mel_pairs(gen, true)
    with torch.autocast(g.device.type, enabled=False):
        v = peak_signal_noise_ratio(g, t, data_range=1.0, dim=(1, 2, 3), reduction="none").reshape(-1)
    return v.clamp(max=max_db)


class _PerItemMetric(Metric):
    """Base of the per-item metrics: states ``values`` and ``segment``; dedupe by segment; mean ± std."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("values", default=[], dist_reduce_fx="cat")
        self.add_state("segment", default=[], dist_reduce_fx="cat")

    def _append(self, values: Tensor, segment: Tensor | None) -> None:
        values = values.detach().float().reshape(-1)
        if segment is None:
            segment = torch.full((len(values),), -1, dtype=torch.long)
        self.values.append(values)
        self.segment.append(torch.as_tensor(segment, device=self.device).long().reshape(-1))

    @staticmethod
    def _cat(x) -> Tensor:
        return (torch.cat(x) if isinstance(x, list) else x).cpu()

    def _keep(self) -> np.ndarray:
        """Indices of the items to count: each segment once (first occurrence), in segment order."""
        seg = self._cat(self.segment).numpy()
        if len(seg) and (seg >= 0).all():
            return np.unique(seg, return_index=True)[1]
        return np.arange(len(seg))

    def _chance(self, keep: np.ndarray) -> float:
        return float("nan")

    def compute(self) -> dict[str, Tensor]:
        keep = self._keep()
        if len(keep) == 0:
            raise ValueError(f"{type(self).__name__}: no items were updated")
        v = self._cat(self.values)[torch.from_numpy(keep)].double().numpy()
        lo, hi = bootstrap_ci95(v)
        return {"mean": torch.tensor(float(v.mean())), "std": torch.tensor(float(v.std())),
                "n": torch.tensor(len(v)), "chance": torch.tensor(self._chance(keep)),
                "ci95_low": torch.tensor(lo), "ci95_high": torch.tensor(hi)}


class ClapScore(_PerItemMetric):
    """CLAP score: cosine between the CLAP embedding of the generated audio and that of the true audio.

    ``update(gen [B, D], true [B, D], music [B] | None, segment [B] | None)``. Both sides must come from the same
    CLAP. ``chance`` is the mismatched-pair baseline: for each item, the mean cosine of its generated embedding with
    the true embeddings of the *other* distinct music segments among the items (CLAP spaces are anisotropic, so
    unrelated clips already score well above 0; the gap to this baseline is the evidence). NaN with fewer than two
    distinct music segments or without ``music``.
    """

    higher_is_better = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in ("gen", "true", "music"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, gen: Tensor, true: Tensor, music: Tensor | None = None, segment: Tensor | None = None) -> None:
        if gen.shape != true.shape or gen.dim() != 2:
            raise ValueError(f"expected embeddings [B, D] of equal shape, got {tuple(gen.shape)} and {tuple(true.shape)}")
        g = F.normalize(gen.detach().float(), dim=-1)
        t = F.normalize(true.detach().float().to(g.device), dim=-1)
        self._append((g * t).sum(-1), segment)
        self.gen.append(g)
        self.true.append(t)
        m = music if music is not None else torch.full((len(g),), -1, dtype=torch.long)
        self.music.append(torch.as_tensor(m, device=self.device).long().reshape(-1))

    def _chance(self, keep: np.ndarray) -> float:
        idx = torch.from_numpy(keep)
        G, T, music = self._cat(self.gen)[idx], self._cat(self.true)[idx], self._cat(self.music)[idx].numpy()
        if (music < 0).any():
            return float("nan")
        uniq, first = np.unique(music, return_index=True)
        if len(uniq) < 2:
            return float("nan")
        sims = (G @ T[torch.from_numpy(first)].T).double().numpy()  # [n, M]
        other = music[:, None] != uniq[None, :]
        return float(((sims * other).sum(1) / other.sum(1)).mean())


class MelSSIM(_PerItemMetric):
    """SSIM of generated vs true log-mel spectrograms (see :func:`mel_ssim` for the data range convention).
    ``update(gen_mel [B, F, N], true_mel [B, F, N'], segment [B] | None)``."""

    higher_is_better = True

    def update(self, gen_mel: Tensor, true_mel: Tensor, segment: Tensor | None = None) -> None:
        self._append(mel_ssim(gen_mel, true_mel), segment)


class MelPSNR(_PerItemMetric):
    """PSNR (dB) of generated vs true log-mel spectrograms on the jointly min-max scaled [0, 1] range, capped at
    :data:`PSNR_MAX_DB` (see :func:`mel_psnr`). ``update(gen_mel, true_mel, segment | None)``."""

    higher_is_better = True

    def update(self, gen_mel: Tensor, true_mel: Tensor, segment: Tensor | None = None) -> None:
        self._append(mel_psnr(gen_mel, true_mel), segment)


class LabelAgreement(_PerItemMetric):
    """Agreement of two label predictions per item (the paper's genre score: a music-genre classifier's label of
    the generated audio equals its label of the true audio). ``update(pred [B], ref [B], segment [B] | None)``.
    ``chance`` is the agreement of independent labels with the same marginals: ``sum_k p_pred(k) p_ref(k)``."""

    higher_is_better = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("pred", default=[], dist_reduce_fx="cat")
        self.add_state("ref", default=[], dist_reduce_fx="cat")

    def update(self, pred: Tensor, ref: Tensor, segment: Tensor | None = None) -> None:
        p = torch.as_tensor(pred, device=self.device).long().reshape(-1)
        r = torch.as_tensor(ref, device=self.device).long().reshape(-1)
        if p.shape != r.shape:
            raise ValueError(f"pred and ref must have the same length, got {len(p)} and {len(r)}")
        self._append((p == r).float(), segment)
        self.pred.append(p)
        self.ref.append(r)

    def _chance(self, keep: np.ndarray) -> float:
        idx = torch.from_numpy(keep)
        p, r = self._cat(self.pred)[idx].numpy(), self._cat(self.ref)[idx].numpy()
        labels = np.union1d(p, r)
        return float(sum((p == k).mean() * (r == k).mean() for k in labels))

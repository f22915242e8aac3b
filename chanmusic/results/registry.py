"""The metric registry: every metric a run writes to ``metrics.json``, in one table.

An entry (:class:`MetricSpec`) says what a metric is (``kind``), which stage computes it, how its chance level is
computed, its name in the paper where that applies (:class:`PaperName`: ``song_id`` is the paper's ``song14``
only when it was 14-way) and whether the ``std`` its entry carries is over repeated distractor draws rather than
over test items. The alignment stage's ``test`` (and every stage built on it) computes each entry of its stage that
has ``build`` and ``update``; the report, the runner's default columns and ``chanmusic robustness`` look metrics up
here. Adding a metric is one :func:`register` call (or one entry below) plus its torchmetrics ``Metric``.

Names derived from an entry resolve to it (:func:`spec_of`): the paper's name (``song14``) and suffixed variants
(``id50_k32`` and ``id50_k32_region``, written by ``chanmusic robustness``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import Tensor
from torchmetrics import Metric

from chanmusic.evaluation.matched_identification import DatasetIdentification, TimeMatchedIdentification
from chanmusic.evaluation.metrics import Identification

ALIGN = "align"


@dataclass(frozen=True)
class PaperName:
    """The paper's name for a metric (``song14``) and the class count at which it applies (14)."""

    name: str
    n_way: int


@dataclass(frozen=True)
class MetricSpec:
    """One metric. ``build(hparams)`` makes its ``Metric`` from the stage's hyperparameters (``id_repeats``,
    ``id_seed``, ...); ``update(metric, embedding [B, D], batch)`` feeds it one test batch (the stage's aligned
    embedding and the data module's batch dict). Entries without them are computed by their stage's own code."""

    name: str
    kind: str                      # identification | per_item | spread | ...
    stage: str                     # the stage whose ``test`` writes it: align, reconstruct, eeg2mel
    chance: str                    # how the entry's ``chance`` is computed, in words
    build: Callable[[Mapping[str, Any]], Metric] | None = None
    update: Callable[[Metric, Tensor, Mapping[str, Any]], None] | None = None
    paper: PaperName | None = None
    draws: bool = False            # ``std`` is over repeated distractor draws, not over test items


def identification(n_way: int | None, distractors: str) -> Callable[[Mapping[str, Any]], Identification]:
    """``build`` of an N-way identification (:class:`~chanmusic.evaluation.metrics.Identification`) with the stage's
    ``id_repeats`` and ``id_seed``."""
    def build(hp: Mapping[str, Any]) -> Identification:
        return Identification(n_way, distractors, int(hp.get("id_repeats", 10)), int(hp.get("id_seed", 0)))
    return build


def update_identification(metric: Metric, emb: Tensor, batch: Mapping[str, Any]) -> None:
    """``update`` of an identification: the embedding against the batch's CLAP targets and its segment facts (and
    its recordings, the clusters of the interval, when the batch has them)."""
    metric.update(emb, batch["clap"], batch["music"], batch["song"], batch["genre"], batch["stimulus"],
                  batch["start"], batch["length"], batch["segment"], batch.get("recording"))


def time_matched(hp: Mapping[str, Any]) -> TimeMatchedIdentification:
    """``build`` of the time-matched identification (distractors: other songs at the same time since onset)."""
    return TimeMatchedIdentification(None, int(hp.get("id_repeats", 10)), int(hp.get("id_seed", 0)))


def by_dataset(distractors: str, own_dataset: bool) -> Callable[[Mapping[str, Any]], DatasetIdentification]:
    """``build`` of a song / genre identification that reports the dataset-aware chance (``chance_dataset``);
    ``own_dataset``: distractors from the item's own dataset only."""
    def build(hp: Mapping[str, Any]) -> DatasetIdentification:
        return DatasetIdentification(distractors, own_dataset, int(hp.get("id_repeats", 10)), int(hp.get("id_seed", 0)))
    return build


def update_by_dataset(metric: Metric, emb: Tensor, batch: Mapping[str, Any]) -> None:
    """``update`` of a :class:`DatasetIdentification`: the identification's inputs, each item's dataset code
    (read from the song table by the batch's song ids) and its recording (the interval's cluster) when known."""
    from datamodules.registry import dataset_code
    from datamodules.songs import SONGS

    codes = [dataset_code(SONGS[int(s)].dataset) for s in batch["song"].reshape(-1).tolist()]
    metric.update(emb, batch["clap"], batch["music"], batch["song"], batch["genre"], batch["stimulus"],
                  batch["start"], batch["length"], batch["segment"], torch.tensor(codes, dtype=torch.long),
                  batch.get("recording"))


_ID_CHANCE = "mean over the test items of 1 / (the candidates the item had)"
_NONE = "none (null)"
REGISTRY: dict[str, MetricSpec] = {}


def register(spec: MetricSpec) -> MetricSpec:
    """Add ``spec`` at the end of the table (a name or paper name already taken is an error)."""
    taken = set(REGISTRY) | {s.paper.name for s in REGISTRY.values() if s.paper is not None}
    clash = sorted(({spec.name} | ({spec.paper.name} if spec.paper is not None else set())) & taken)
    if clash:
        raise ValueError(f"metric registry: {', '.join(clash)} already registered — choose another name")
    REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove the entry ``name`` (tests that register a toy metric put the table back as it was)."""
    REGISTRY.pop(name, None)


def test_metrics(stage: str = ALIGN) -> list[MetricSpec]:
    """The entries ``stage``'s ``test`` computes through the registry (with ``build`` and ``update``), in order."""
    return [s for s in REGISTRY.values() if s.stage == stage and s.build is not None and s.update is not None]


def spec_of(name: str) -> MetricSpec | None:
    """The entry of a metric name: itself, the paper's name of an entry, or ``<entry>_<suffix>``; else ``None``."""
    if name in REGISTRY:
        return REGISTRY[name]
    for s in REGISTRY.values():
        if s.paper is not None and s.paper.name == name:
            return s
    bases = [n for n in REGISTRY if name.startswith(n + "_")]
    return REGISTRY[max(bases, key=len)] if bases else None


def paper_name(metric: str) -> PaperName | None:
    """The paper's name of ``metric`` (itself registered, not a paper name or a derived one), else ``None``."""
    s = REGISTRY.get(metric)
    return s.paper if s is not None else None


def paper_names() -> list[tuple[MetricSpec, PaperName]]:
    """``(entry, its paper name)`` of every entry that has one, in order."""
    return [(s, s.paper) for s in REGISTRY.values() if s.paper is not None]


def std_over_draws(metric: str) -> bool:
    """Whether the ``std`` of ``metric``'s entry is over repeated distractor draws (what a file without the entry's
    ``repeats`` needs to know)."""
    s = spec_of(metric)
    return s is not None and s.draws


def default_columns() -> list[str]:
    """The results table's columns when a comparison spec names none: the alignment stage's identifications."""
    return [s.name for s in REGISTRY.values() if s.stage == ALIGN and s.kind == "identification"]


for _spec in (
    MetricSpec("id50", "identification", ALIGN, _ID_CHANCE, identification(50, "segment"), update_identification,
               draws=True),
    MetricSpec("id50_time", "identification", ALIGN, _ID_CHANCE + " (1 / (1 + the other songs with a test "
               "segment at the same time since onset)); time-locked signals cannot help", time_matched,
               update_identification, draws=True),
    MetricSpec("song_id", "identification", ALIGN, _ID_CHANCE + " (1 / the songs present); chance_dataset: "
               "1 / the songs present in the item's own dataset", by_dataset("song", False), update_by_dataset,
               PaperName("song14", 14), draws=True),
    # label-based, distractors of the item's own dataset only; NOT the paper's genre10 (= genre_agreement)
    MetricSpec("genre_id", "identification", ALIGN, _ID_CHANCE + " (1 / the genres present in the item's own "
               "dataset; items whose dataset has one genre are left out)", by_dataset("genre", True),
               update_by_dataset, draws=True),
    MetricSpec("within_song", "identification", ALIGN, _ID_CHANCE, identification(10, "within_song"),
               update_identification, draws=True),
    MetricSpec("embedding_spread", "spread", ALIGN, _NONE),
    MetricSpec("embedding_rank", "spread", ALIGN, _NONE),
    MetricSpec("encoder_spread", "spread", ALIGN, _NONE),
    MetricSpec("encoder_rank", "spread", ALIGN, _NONE),
    MetricSpec("clap_score", "per_item", "reconstruct",
               "mean cosine of each generated clip's CLAP embedding with the true ones of the other music segments"),
    MetricSpec("ssim", "per_item", "reconstruct", _NONE),
    MetricSpec("psnr", "per_item", "reconstruct", _NONE),
    MetricSpec("genre_agreement", "per_item", "reconstruct",
               "agreement of independent labels with the same marginals: sum over labels of p_generated * p_true"),
    MetricSpec("gen_id50", "identification", "reconstruct", _ID_CHANCE, draws=True),
    MetricSpec("gen_song_id", "identification", "reconstruct", _ID_CHANCE, draws=True),
    MetricSpec("gen_genre_id", "identification", "reconstruct", _ID_CHANCE, draws=True),
    MetricSpec("ridge_id50", "identification", "reconstruct", _ID_CHANCE, draws=True),
    MetricSpec("ridge_cosine", "per_item", "reconstruct",
               "mean cosine of each ridge prediction with the true embeddings of the other music segments"),
    MetricSpec("mel_mse", "per_item", "eeg2mel", _NONE),
    MetricSpec("mel_id50", "identification", "eeg2mel", _ID_CHANCE, draws=True),
):
    register(_spec)
del _spec

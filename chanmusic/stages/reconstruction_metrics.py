"""The reconstruction metrics (docs/stages.md): of the ridge prediction against the raw CLAP embeddings
(``ridge_id50``, ``ridge_cosine``; not for the oracle) and of the generated audio against the true audio
(``clap_score``, ``ssim``, ``psnr``, ``gen_id50``, ``gen_song_id``, ``gen_genre_id``, ``genre_agreement``)."""
from __future__ import annotations

import logging
from typing import Any, Callable

from torch import nn

from chanmusic.results.metrics_file import metric_entry
from chanmusic.evaluation.metrics import ClapScore, Identification, LabelAgreement, MelPSNR, MelSSIM, reset_metric

__all__ = ["ReconstructionMetrics"]

log = logging.getLogger("chanmusic")

KEYS = ("music", "song", "genre", "stimulus", "start", "length", "segment")  #: the batch fields identification reads


class ReconstructionMetrics(nn.Module):
    """The reconstruction stage's test metrics, one entry each in ``metrics.json``.

    Args:
        oracle: the audio-oracle row (no ridge prediction: no ``ridge_*`` metrics).
        genre_agreement: add ``genre_agreement`` (a genre classifier is configured).
        id_repeats, id_seed: repeats and seed of the identification draws.
    """

    def __init__(self, oracle: bool, genre_agreement: bool, id_repeats: int = 10, id_seed: int = 0):
        super().__init__()
        self.metrics = nn.ModuleDict({
            "clap_score": ClapScore(), "ssim": MelSSIM(), "psnr": MelPSNR(),
            "gen_id50": Identification(50, "segment", id_repeats, id_seed),
            "gen_song_id": Identification(None, "song", id_repeats, id_seed),
            "gen_genre_id": Identification(None, "genre", id_repeats, id_seed),
        })
        if not oracle:
            self.metrics["ridge_id50"] = Identification(50, "segment", id_repeats, id_seed)
            self.metrics["ridge_cosine"] = ClapScore()
        if genre_agreement:
            self.metrics["genre_agreement"] = LabelAgreement()

    def update_ridge(self, batch: dict[str, Any], cond: Any, raw_true: Any) -> None:
        """Every test window: the ridge prediction ``cond`` against its raw CLAP embedding ``raw_true``."""
        self.metrics["ridge_id50"].update(cond, raw_true, *(batch[k] for k in KEYS))
        self.metrics["ridge_cosine"].update(cond, raw_true, batch["music"], batch["segment"])

    def update_generated(self, batch: dict[str, Any], r: dict[str, Any], labels: Callable[[], tuple] | None) -> None:
        """The generated windows ``r["sel"]`` of the batch: their audio's CLAP embedding ``r["gen_emb"]`` and
        log-mel ``r["gen_mel"]`` against the true ones; ``labels()``: (generated, true) genre labels, if measured."""
        s = r["sel"]
        sub = {k: batch[k][s] for k in KEYS}
        true = r["raw_true"][s]
        m = self.metrics
        m["clap_score"].update(r["gen_emb"], true, sub["music"], sub["segment"])
        m["ssim"].update(r["gen_mel"], batch["mel"][s], sub["segment"])
        m["psnr"].update(r["gen_mel"], batch["mel"][s], sub["segment"])
        for name in ("gen_id50", "gen_song_id", "gen_genre_id"):
            m[name].update(r["gen_emb"], true, *(sub[k] for k in KEYS))
        if labels is not None:
            m["genre_agreement"].update(*labels(), sub["segment"])

    def compute(self, log_metric: Callable[[str, float], None], single_process: bool) -> dict[str, dict[str, Any]]:
        """The epoch's entries (mean, n, n_way, chance, ci95: bootstrap over items), each logged as ``test/<name>``;
        on one process a metric never updated is left out, one that cannot be formed is logged and left out."""
        results: dict[str, dict[str, Any]] = {}
        for name, metric in self.metrics.items():
            if single_process and not metric.update_called:
                continue
            try:
                r = {k: v.item() for k, v in metric.compute().items()}
            except ValueError as e:  # e.g. too few generated songs for an identification
                log.warning("reconstruct: %s not computed: %s", name, e)
                reset_metric(metric)
                continue
            metric.reset()
            results[name] = metric_entry(r)
            log_metric(f"test/{name}", results[name]["mean"])
        return results

"""The collapse metric (spread of the test embeddings): it flags a constant encoder and passes a working one, in the
alignment stage's metrics.json, its TensorBoard scalars and the comparison table."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import cosine_distances

from chanmusic.evaluation.collapse import (COLLAPSE_SPREAD, EmbeddingSpread, cosine_distance_per_item, effective_rank,
                                           embedding_spread, mean_pairwise_cosine_distance)
from chanmusic.stages.align import AlignModule
from encoders.linear_reference import LinearReference

C, T = 8, 50


def test_spread_matches_brute_force_and_the_rank_definition():
    g = np.random.default_rng(0)
    e = g.normal(size=(40, 16)) + 0.5
    d = cosine_distances(e)  # sklearn: 1 - cos
    assert mean_pairwise_cosine_distance(torch.tensor(e)) == pytest.approx(d[~np.eye(40, dtype=bool)].mean(), abs=1e-10)
    per_item = d.sum(1) / 39  # the diagonal is 0
    assert np.allclose(cosine_distance_per_item(torch.tensor(e)).numpy(), per_item, atol=1e-10)
    assert embedding_spread(torch.tensor(e))["spread_std"] == pytest.approx(per_item.std(), abs=1e-10)
    s = np.linalg.svd(e, compute_uv=False)
    p = s / s.sum()
    assert effective_rank(torch.tensor(e)) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-9)
    assert effective_rank(torch.eye(5)) == pytest.approx(5.0)


def test_constant_encoder_is_flagged_and_working_one_passes():
    g = torch.Generator().manual_seed(0)
    const = torch.randn(1, 32, generator=g).repeat(100, 1) + 1e-5 * torch.randn(100, 32, generator=g)
    working = torch.randn(100, 32, generator=g)
    offset = torch.randn(1, 32, generator=g) * 30 + torch.randn(100, 32, generator=g)  # one shared direction dominates
    rank_one = torch.randn(100, 1, generator=g) * torch.randn(1, 32, generator=g)       # varies along one axis only
    assert embedding_spread(const)["collapsed"] and embedding_spread(const)["spread"] < 1e-8
    assert not embedding_spread(working)["collapsed"] and embedding_spread(working)["spread"] > 0.9
    assert embedding_spread(offset)["collapsed"] and embedding_spread(offset)["spread"] < COLLAPSE_SPREAD
    assert embedding_spread(rank_one)["collapsed"] and embedding_spread(rank_one)["rank"] == pytest.approx(1.0, abs=1e-4)
    m = EmbeddingSpread()
    for chunk in working.split(30):
        m.update(chunk)
    assert m.compute()["spread"].item() == pytest.approx(embedding_spread(working)["spread"], rel=1e-6)


def _batches(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"eeg": torch.randn(C, T, generator=g), "clap": torch.randn(16, generator=g), "song": i % 4,
             "genre": i % 3, "subject": 0, "segment": i, "music": i, "stimulus": i % 4, "start": T * (i // 4),
             "length": T, "channel_mask": torch.ones(C, dtype=torch.bool)} for i in range(n)]


@pytest.mark.parametrize("constant", [True, False])
def test_align_test_writes_the_spread_and_warns_on_collapse(constant, tmp_path, caplog):
    import lightning as L

    torch.manual_seed(0)
    enc = LinearReference(C, 125.0, T, embed_dim=8)
    if constant:  # every window -> the same embedding
        with torch.no_grad():
            enc.proj.weight.zero_()
    module = AlignModule(enc, clap_dim=16, head="linear", id_repeats=2)
    loader = torch.utils.data.DataLoader(_batches(), batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu")
        with caplog.at_level("WARNING", logger="chanmusic"):
            trainer.test(module, loader, verbose=False)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["embedding_spread"]["collapsed"] is constant and m["embedding_spread"]["n"] == 48
    assert {"mean", "std", "n", "chance"} <= set(m["embedding_spread"]) and {"mean", "std", "n"} <= set(m["embedding_rank"])
    assert (m["embedding_spread"]["mean"] < COLLAPSE_SPREAD) is constant
    assert m["embedding_rank"]["mean"] >= 1.0
    assert m["encoder_spread"]["collapsed"] is constant  # the encoder's own output, before the head
    assert "test/embedding_spread" in trainer.callback_metrics and "test/encoder_spread" in trainer.callback_metrics
    assert ("COLLAPSED" in caplog.text) is constant


def test_report_marks_a_collapsed_row():
    from chanmusic.report.rows import Cell, RowResult
    from chanmusic.report.tables import status_text

    # the flag is per run (chanmusic.report.rows.run_collapsed, tests/test_report_rows_truth.py)
    ok = RowResult("a", "A", "main", "done", seeds_done=1, seeds_total=1,
                   cells={"embedding_spread": Cell("embedding_spread", mean=0.3), "embedding_rank": Cell("r", mean=20)})
    flat = RowResult("b", "B", "main", "done", seeds_done=1, seeds_total=1, collapsed=["seed0"],
                     cells={"embedding_spread": Cell("embedding_spread", mean=2e-8),
                            "embedding_rank": Cell("r", mean=1.1)})
    assert "COLLAPSED" not in status_text(ok) and "COLLAPSED" in status_text(flat)


def test_report_aggregates_the_spread_entries_with_their_control():
    from chanmusic.evaluation.collapse import metrics_entries
    from chanmusic.report.rows import _cell

    g = torch.Generator().manual_seed(0)
    music = metrics_entries(embedding_spread(torch.randn(60, 8, generator=g)))
    control = metrics_entries(embedding_spread(torch.randn(60, 8, generator=g) + 3))
    for name in ("embedding_spread", "embedding_rank"):
        c = _cell(name, {0: music[name]}, {0: control[name]}, {0: 10}, {})
        assert c.mean == pytest.approx(music[name]["mean"]) and c.gain == pytest.approx(
            music[name]["mean"] - control[name]["mean"])
    assert _cell("embedding_rank", {0: music["embedding_rank"]}, {}, {0: 10}, {}).ci95 is None  # one number, no CI

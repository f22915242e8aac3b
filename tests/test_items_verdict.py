"""Per-item results and the verdict built from them (issue 27): Identification's per-item hits and ranks,
``items.csv`` written and read back, and the report's gain interval and verdict computed from those files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from chanmusic.evaluation.metrics import Identification
from chanmusic.results.items_file import FACTS, paired_items, read_items, write_items


def _identification(preds, targets, recording):
    n = len(preds)
    m = Identification(None, "song", repeats=4, seed=0)
    song = torch.arange(n) % 4
    m.update(preds, targets, torch.arange(n), song, song, song, torch.zeros(n), torch.ones(n), torch.arange(n),
             recording)
    return m.compute(), m.last_items


def test_identification_exposes_per_item_hits_and_ranks():
    # 8 items of 4 songs, orthogonal targets: a perfect prediction ranks the truth first (hit 1, rank 1) against
    # every one of the 3 other songs; the negated one ranks it last (hit 0, rank 4).
    a = torch.eye(8)
    _, good = _identification(a, a, torch.arange(8) // 2)
    _, bad = _identification(-a, a, torch.arange(8) // 2)
    assert good["hit"].tolist() == [1.0] * 8 and good["rank"].tolist() == [1.0] * 8
    assert bad["hit"].tolist() == [0.0] * 8 and bad["rank"].tolist() == [4.0] * 8
    assert good["recording"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and good["candidates"].tolist() == [4] * 8


def test_interval_over_recordings_is_wider_when_windows_of_a_recording_agree():
    # 40 items in 4 recordings; recording 0's predictions are right, the others' wrong: every window of a
    # recording agrees. Over recordings the interval is [0, 0.75] (K/4, K ~ Binomial(4, 1/4); see
    # test_verdict_statistics); over windows it is about 0.25 +- 0.13.
    a = torch.eye(40)
    rec = torch.arange(40) // 10
    preds = torch.where((rec == 0)[:, None], a, -a)
    r, _ = _identification(preds, a, rec)
    assert float(r["mean"]) == 0.25 and int(r["ci95_over"]) == 1
    assert (float(r["ci95_low"]), float(r["ci95_high"])) == (0.0, 0.75)
    assert 0.05 < float(r["ci95_windows_low"]) < 0.25 < float(r["ci95_windows_high"]) < 0.45


def test_items_file_round_trip_and_pairing(tmp_path):
    facts = {"segment": [5, 3, 9], "recording": [0, 0, 1], "subject": [1, 1, 2], "song": [21, 21, 22],
             "dataset": ["nmed-t"] * 3, "stimulus": [1, 1, 2], "start": [0, 2, 0], "length": [2, 2, 2]}
    path = write_items(tmp_path / "items.csv", facts,
                       {"song_id": {"segment": np.array([3, 9]), "hit": np.array([1.0, 0.5]),
                                    "rank": np.array([1.0, 1.5])}})
    df = read_items(path)                                         # pandas, one line
    assert list(df.columns) == list(FACTS) + ["song_id_hit", "song_id_rank"]
    assert df["song_id_hit"].isna().tolist() == [True, False, False]   # segment 5 was not scored
    control = df.assign(song_id_hit=[0.0, 0.0, 1.0])
    m, c, rec = paired_items(df, control, "song_id")
    assert m.tolist() == [1.0, 0.5] and c.tolist() == [0.0, 1.0] and rec.tolist() == [0, 1]
    with pytest.raises(ValueError, match="duplicate segments"):
        write_items(tmp_path / "x.csv", {**facts, "segment": [1, 1, 2]}, {})


def _run(out: Path, control: bool, hits: np.ndarray, step: int) -> None:
    d = out / "runs" / "row" / "seed0" / ("control" if control else "music")
    (d / "align").mkdir(parents=True)
    (d / "status.json").write_text(json.dumps({"status": "done"}))
    n = len(hits)
    (d / "align" / "metrics.json").write_text(json.dumps({
        "schema_version": 1, "song_id": {"mean": float(hits.mean()), "n": n, "n_way": 4, "chance": 0.25,
                                         "ci95": [0.0, 1.0]},
        "checkpoint": {"step": step, "rule": "last", "checkpoint": "x"}}))
    facts = {"segment": list(range(n)), "recording": list(np.arange(n) // 10), "subject": [1] * n,
             "song": [21] * n, "dataset": ["nmed-t"] * n, "stimulus": [1] * n, "start": [0] * n, "length": [2] * n}
    write_items(d / "align" / "items.csv", facts,
                {"song_id": {"segment": np.arange(n), "hit": hits, "rank": 2 - hits}})


def test_report_gain_and_verdict_come_from_the_items_files(tmp_path):
    from chanmusic.report.console import gain_verdicts
    from chanmusic.report.rows import collect

    spec = {"rows": [{"name": "row", "label": "Row", "configs": []}], "seeds": [0], "metrics": ["song_id"],
            "primary_metric": "song_id", "profile": {}, "profile_name": "x", "title": "t"}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    # the hand-computed case: only recording 0 of 4 responds; the control hits nothing
    _run(tmp_path, False, np.repeat([1.0, 0.0, 0.0, 0.0], 10), 250)
    _run(tmp_path, True, np.zeros(40), 250)
    _, [row] = collect(tmp_path)
    c = row.cells["song_id"]
    assert c.gain == 0.25 and c.gain_ci95 == (0.0, 0.75)
    assert c.gain_ci95_kind.startswith("recordings (paired bootstrap, 4 recordings)")
    assert row.verdict["beats"] is False and row.steps == {"music": {0: 250}, "control": {0: 250}}
    [line] = gain_verdicts([row], "song_id")
    assert "Row: does NOT beat its no-music control on song_id" in line
    assert "scored at step 250 (music and control)" in line


def test_steps_are_compared_within_each_seed():
    from chanmusic.report.steps import steps_text

    # each seed its own split (another number of training windows): equal within a seed is what counts
    assert steps_text({"music": {0: 96, 1: 100}, "control": {0: 96, 1: 100}}) == "96–100 (music = control in every seed)"
    assert "UNEQUAL" in steps_text({"music": {0: 96, 1: 100}, "control": {0: 100, 1: 96}})

"""The table says what each run did: its optimiser steps (music and control), and a collapse flag per run — a
collapsed control or a single collapsed seed included, which the old row-averaged flag missed."""
from __future__ import annotations

import json
from pathlib import Path

from chanmusic.report.rows import collect
from chanmusic.report.tables import status_text


def _run(out: Path, row: str, seed: int, control: bool, steps: int, spread: float, rank: float) -> None:
    d = out / "runs" / row / f"seed{seed}" / ("control" if control else "music")
    (d / "align").mkdir(parents=True)
    metrics = {"id50": {"mean": 0.1, "n": 100, "n_way": 50, "chance": 0.02, "ci95": [0.05, 0.15]},
               "embedding_spread": {"mean": spread, "n": 100}, "embedding_rank": {"mean": rank, "n": 100}}
    (d / "align" / "metrics.json").write_text(json.dumps(metrics))
    (d / "align" / "fit_done.json").write_text(json.dumps({"checkpoint": None, "step": steps, "rule": "last"}))
    (d / "status.json").write_text(json.dumps({"status": "done"}))


def _out(tmp_path: Path) -> Path:
    spec = {"metrics": ["id50"], "seeds": [0, 1],
            "rows": [{"name": "same", "label": "Same budget"}, {"name": "cheap", "label": "Cheap baseline"}]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    healthy, flat = (0.4, 30.0), (1e-8, 1.0)
    for seed in (0, 1):
        _run(tmp_path, "same", seed, False, 216, *healthy)
        _run(tmp_path, "same", seed, True, 216, *(flat if seed == 1 else healthy))  # one control collapsed
        _run(tmp_path, "cheap", seed, False, 40, *healthy)
        _run(tmp_path, "cheap", seed, True, 40, *healthy)
    return tmp_path


def test_each_rows_steps_are_in_the_table(tmp_path):
    _, results = collect(_out(tmp_path))
    same, cheap = results
    assert same.steps == {"music": {0: 216, 1: 216}, "control": {0: 216, 1: 216}}
    assert "steps 216" in status_text(same) and "steps 40" in status_text(cheap)


def test_a_collapsed_control_seed_is_flagged(tmp_path):
    _, results = collect(_out(tmp_path))
    same, cheap = results
    # averaged over music seeds the row looks healthy; the one collapsed control run must still show
    assert same.collapsed == ["control seed1"]
    assert "COLLAPSED" in status_text(same) and "control seed1" in status_text(same)
    assert not cheap.collapsed and "COLLAPSED" not in status_text(cheap)

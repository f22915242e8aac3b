"""Bad input of the verdict's settings in a comparison spec (issue 27): a primary metric no row computes, a
``split_seeds`` list with duplicates or too short, a control minimum shift longer than the shortest recording allows.
Each is one line naming the field, exit 2, before any run (the last: before any training)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tooling.cli_cases import E, assert_refused, run


def _spec(tmp_path: Path, **top) -> Path:
    """experiments/paper.yaml with ``top`` set at its top level, written beside it (config_root kept)."""
    raw = yaml.safe_load((E / "paper.yaml").read_text())
    raw.update(top)
    raw["config_root"] = str(E)
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(raw, sort_keys=False))
    return p


@pytest.mark.parametrize("top, where, what", [
    ({"primary_metric": "clap_score"}, "spec: primary_metric", "computed by no row"),
    ({"primary_metric": "song_idd"}, "spec: primary_metric", "computed by no row"),
    ({"split_seeds": [42, 43, 42]}, "spec: split_seeds", "duplicates [42]"),
    ({"split_seeds": [42]}, "spec: split_seeds", "1 split seeds for 2 seeds"),
])
def test_bad_verdict_settings_are_one_line(capsys, tmp_path, top, where, what):
    out = tmp_path / "out"
    code, err = run(["compare", "--config", _spec(tmp_path, **top), "--profile", "quick", "--seeds", "2",
                     "--rows", "linear_reference", "--out", out, "--dry-run"], capsys)
    line = assert_refused(code, err, where)
    assert what in line
    assert not out.exists()


def test_primary_metric_on_rows_that_do_not_align_is_refused(capsys, tmp_path):
    code, err = run(["compare", "--config", _spec(tmp_path, primary_metric="song_id"), "--profile", "quick",
                     "--rows", "audio_oracle", "--out", tmp_path / "out", "--dry-run"], capsys)
    assert "select a row that aligns" in assert_refused(code, err, "spec: primary_metric")


def test_good_verdict_settings_plan_each_seed_its_own_split(capsys, tmp_path):
    from chanmusic.runner.plan import plan_runs, run_overrides
    from chanmusic.runner.spec import load_spec

    spec = load_spec(_spec(tmp_path, split_seeds=[7, 11, 13]), "quick", ["linear_reference"], 3, tmp_path)
    assert spec.primary_metric == "song_id"
    got = [run_overrides(spec, "align", p.dir, p.seed, p.control)["data"]["split_seed"]
           for p in plan_runs(spec, tmp_path)]
    assert got == [7, 7, 11, 11, 13, 13]           # music and control of a seed share it; seeds differ
    default = load_spec(E / "paper.yaml", "quick", ["linear_reference"], 2, tmp_path)
    assert [default.split_seed(s) for s in default.seeds] == [42, 43]   # the documented mapping 42 + k


def test_a_minimum_shift_longer_than_the_shortest_recording_allows_is_one_line(capsys, world, tmp_path):
    # the world's recordings last 12 s: the control's default 30-s minimum shift from zero (circularly) cannot fit
    runs = tmp_path / "runs"
    code, err = run(["fit", *world.args(runs=runs, cache=tmp_path / "cache"), "--data.control", "shift"], capsys)
    line = assert_refused(code, err, "--data.control_min_shift_s")
    assert "set data.control_min_shift_s to at most" in line
    assert not list(runs.rglob("*.ckpt")) and not list(runs.rglob("metrics.json"))

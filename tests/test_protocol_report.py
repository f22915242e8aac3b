"""The comparison table says which interval it shows: one seed -> the runs' bootstrap interval over test windows,
several -> the t-interval over seeds; song_id is called song14 (with the paper's number) only when it is 14-way."""
from __future__ import annotations

import csv
import json

import yaml

from chanmusic.report.results import write_results
from chanmusic.results.layout import run_folder as run_dir
from chanmusic.runner import load_spec, save_spec, write_status


def _entry(mean, lo, hi, n_way=None):
    return {"mean": mean, "n": 200, "n_way": n_way, "chance": 0.1, "ci95": [lo, hi], "draw_std": 0.004, "repeats": 10}


def _out(tmp_path, seeds, song_way, base):
    spec = {"title": "t", "config_root": str(tmp_path), "metrics": ["id50", "song_id"], "paper_source": "test",
            "rows": [{"name": "ours", "label": "Ours", "configs": ["x.yaml"], "paper": {"id50": 0.487, "song14": 0.692}}],
            "profiles": {"quick": {"seeds": seeds, "base": [], "description": "fake"}}}
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    out.mkdir()
    save_spec(load_spec(tmp_path / "paper.yaml", "quick", out=out), out)
    for seed in range(seeds):
        for control in (False, True):
            m = base + 0.02 * seed if not control else 0.03
            d = run_dir(out, "ours", seed, control)
            (d / "align").mkdir(parents=True)
            (d / "align" / "metrics.json").write_text(json.dumps({
                "id50": _entry(m, m - 0.05, m + 0.05, 50), "song_id": _entry(m + 0.2, m + 0.1, m + 0.3, song_way),
                "genre_id": None, "unavailable": {"genre_id": "only 1 genre present"}}))
            write_status(d, {"status": "done"})
    return out


def test_one_seed_shows_the_bootstrap_interval_and_paper_names_follow_the_count(tmp_path):
    out = _out(tmp_path, 1, 14, 0.40)
    write_results(out)
    md = (out / "results.md").read_text()
    assert "| song14 |" in md                         # 14-way on the pool: the paper's name ...
    assert "0.692" in md                              # ... and the paper's number beside it
    assert "0.400 [0.350, 0.450]†" in md              # one seed: the run's bootstrap interval over test windows
    assert "bootstrap interval over test recordings" in md and "NOT seed-to-seed" in md
    rows = list(csv.DictReader((out / "results.csv").open()))
    song = next(r for r in rows if r["metric"] == "song_id")
    assert song["n_way"] == "14" and song["ci_kind"] == "test items (bootstrap)" and song["paper"] == "0.692"


def test_a_10_way_song_metric_is_not_compared_with_the_papers_14_way_number(tmp_path):
    out = _out(tmp_path, 1, 10, 0.40)
    write_results(out)
    md = (out / "results.md").read_text()
    assert "song_id (10-way)" in md and "song14" not in md.split("## Notes")[0]
    assert "0.692" not in md and "0.487" in md


def test_several_seeds_show_the_interval_over_seeds(tmp_path):
    out = _out(tmp_path, 3, 14, 0.40)
    write_results(out)
    rows = list(csv.DictReader((out / "results.csv").open()))
    id50 = next(r for r in rows if r["metric"] == "id50")
    assert id50["ci_kind"] == "seeds" and id50["seeds"] == "3"
    # mean over seeds 0.40, 0.42, 0.44: t-interval with 2 df, half-width t(0.975, 2) * 0.02 / sqrt(3) = 0.0497
    assert float(id50["mean"]) == 0.42
    assert abs(float(id50["ci_high"]) - 0.42 - 4.302653 * 0.02 / 3 ** 0.5) < 1e-4
    # the runs' own (bootstrap) intervals stay beside it
    assert abs(float(id50["item_ci_low"]) - 0.37) < 1e-9 and abs(float(id50["item_ci_high"]) - 0.47) < 1e-9
    md = (out / "results.md").read_text()
    assert "95% CI over seeds" in md

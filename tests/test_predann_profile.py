"""The PredANN++ protocol as a profile: 3-s windows, 30-s chunks split at random, NMED-T only, its published
number (0.823, Noguchi et al.) beside song_id; and every row of a demo/quick profile trains the same budget."""
from __future__ import annotations

import yaml

from chanmusic.report.rows import paper_value
from chanmusic.runner.spec import DEFAULT_SPEC, EXPERIMENTS, load_spec


def test_the_predann_profile_reads_its_protocol():
    spec = load_spec(DEFAULT_SPEC, "predann")
    assert spec.profile["base"] == ["data/predann.yaml"] and len(spec.seeds) == 3
    data = yaml.safe_load((EXPERIMENTS / "data" / "predann.yaml").read_text())["data"]
    assert data["dataset"] == "nmed-t" and data["window_s"] == 3.0 and data["split"] == "random"
    assert data["span_s"] == 30.0
    # the published number sits beside song_id (10-way on NMED-T), for every row, in place of Qing et al.'s
    for row in spec.rows:
        assert row.paper == {"song_id": 0.823}
        assert paper_value(row.paper, "song_id", 10) == 0.823
    assert "PredANN++" in spec.paper_source


def test_every_row_of_the_demo_and_quick_profiles_gets_one_budget():
    raw = yaml.safe_load(DEFAULT_SPEC.read_text())
    for name in ("demo", "quick"):
        prof = raw["profiles"][name]
        assert not prof.get("row_set"), f"{name}: a row with its own budget must be declared and justified"
        assert prof["set"]["trainer"]["max_epochs"] == 8 and "limit_train_batches" not in prof["set"]["trainer"]

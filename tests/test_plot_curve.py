"""benchmarks/plot_curve.py: gain over control per step from the learning-curve driver's JSON lines."""
import json
import math

from benchmarks.plot_curve import gains, table


def test_gain_pairs_music_with_its_control_at_the_same_step(tmp_path):
    recs = [{"row": "co", "control": False, "step": 100, "cpu_s": 60.0, "n": 400, "song_id": 0.30},
            {"row": "co", "control": True, "step": 100, "cpu_s": 66.0, "n": 400, "song_id": 0.10},
            {"row": "co", "control": False, "step": 200, "cpu_s": 120.0, "n": 400, "song_id": 0.35}]  # no control yet
    p = tmp_path / "curve.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in recs))
    g = gains([str(p)], "song_id", add_cpu={"co": 54.0})["co"]
    assert [q["step"] for q in g] == [100]  # a step without its control is not a gain
    q = g[0]
    assert math.isclose(q["gain"], 0.20) and math.isclose(q["cpu_min"], (66.0 + 54.0) / 60)
    assert math.isclose(q["se"], math.sqrt(0.3 * 0.7 / 400 + 0.1 * 0.9 / 400))
    assert "| co | 100 | 2.0 | 0.300 | 0.100 | +0.200 ±" in table({"co": g}, "song_id")

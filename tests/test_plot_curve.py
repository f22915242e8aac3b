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
    se = math.sqrt(0.3 * 0.7 / 400 + 0.1 * 0.9 / 400)  # lines without per-window files: ±1 binomial se
    assert math.isclose(q["lo"], 0.20 - se) and math.isclose(q["hi"], 0.20 + se)
    assert "| co | 100 | 2.0 | 0.300 | 0.100 | +0.200 [+0." in table({"co": g}, "song_id")


def items(path, hits):
    """A per-window file: ``hits`` = [(recording, song_id hit), ...], one window each."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("segment,recording,song_id_hit\n" + "".join(f"{i},{r},{h}\n" for i, (r, h) in enumerate(hits)))


def test_the_interval_is_paired_over_recordings_when_the_windows_were_kept(tmp_path):
    # 6 recordings x 4 windows; in every recording music hits exactly one window more than the control: the
    # per-recording gain is 1/4 everywhere, so any resample of recordings gives 0.25 — a zero-width interval —
    # while a window-level binomial se would be about 0.1 wide
    music = [(r, 1.0 if w < 2 else 0.0) for r in range(6) for w in range(4)]
    control = [(r, 1.0 if w < 1 else 0.0) for r in range(6) for w in range(4)]
    items(tmp_path / "items" / "m.csv", music)
    items(tmp_path / "items" / "c.csv", control)
    recs = [{"row": "co", "control": c, "step": 100, "split": "val", "cpu_s": 1.0, "n": 24, "song_id": v,
             "items": f"items/{f}.csv"} for c, v, f in ((False, 0.5, "m"), (True, 0.25, "c"))]
    (tmp_path / "curve.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    assert gains([str(tmp_path / "curve.jsonl")], "song_id") == {}  # test split asked, only val scored
    q = gains([str(tmp_path / "curve.jsonl")], "song_id", split="val")["co"][0]
    assert q["kind"].startswith("paired recordings")
    assert math.isclose(q["gain"], 0.25) and math.isclose(q["lo"], 0.25) and math.isclose(q["hi"], 0.25)
    # one recording where the music run lost its window: the interval now spans the recordings' disagreement
    items(tmp_path / "items" / "m.csv", [(r, 0.0 if r == 0 else h) for r, h in music])
    q = gains([str(tmp_path / "curve.jsonl")], "song_id", split="val")["co"][0]
    assert math.isclose(q["gain"], (5 * 0.25 - 0.25) / 6) and q["lo"] < q["gain"] < q["hi"] <= 0.25 + 1e-12


def _curve(path, row, points):
    """``points``: [(step, music, control)]; n = 400 windows, no per-window files (binomial se)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps({"row": row, "control": c, "step": s, "cpu_s": 1.0, "n": 400, "song_id": v})
                              for s, m, k in points for c, v in ((False, m), (True, k))))
    return str(path)


def test_grid_and_target_read_generator_and_snr_from_the_preset_folders(tmp_path):
    from benchmarks.plot_curve import grid, target

    paths = [_curve(tmp_path / "demo-9" / "co" / "curve.jsonl", "co", [(400, 0.30, 0.10), (800, 0.30, 0.10)]),
             _curve(tmp_path / "demo-9" / "lin" / "curve.jsonl", "lin", [(400, 0.40, 0.10), (800, 0.25, 0.10)]),
             _curve(tmp_path / "dipole-16" / "co" / "curve.jsonl", "co", [(800, 0.12, 0.10)]),
             _curve(tmp_path / "dipole-16" / "lin" / "curve.jsonl", "lin", [(800, 0.13, 0.10)])]
    curves = gains(paths, "song_id", label_dirs=True)
    text = grid(curves, "song_id")
    assert "| SNR dB | row | demo 400 | demo 800 | dipole 800 |" in text
    assert "| -9 | co | +0.200 [" in text and "| -16 | lin | — | — | +0.030 [" in text
    lines, ok = target(curves, "co", "lin", 800)   # demo 800: 0.20 >= 0.15; dipole 800: 0.02 < 0.03
    assert not ok and "dipole-16: step 800: co +0.020" in lines and lines.endswith("BELOW")
    assert "demo-9: step 800" in lines and "demo-9: step 400" not in lines   # before FROM_STEP: not judged
    lines, ok = target({k: v for k, v in curves.items() if k.startswith("demo")}, "co", "lin", 800)
    assert ok and lines.count("\n") == 0 and "at or above" in lines
    assert target(curves, "co", "nope", 800) == ("", False)   # nothing compared is not a met target

"""Calibration of the verdict: how often "beats its no-music control" fires when the EEG holds no music.

    python benchmarks/calibration.py [--seeds 20] [--out calibration_out] [--jobs 2] [--epochs 4]

Writes the synthetic demo set with ``music_response=False`` (the same noise, recordings and songs as ``make
demo``'s data, without any response to the music: :func:`datamodules.synthetic.write_demo`), then runs
``chanmusic compare`` on it with the linear reference row, each seed with its own ``split_seed`` (its own test
windows and control shifts, the spec's seed → split seed mapping), music and control alike. For every seed the
verdict is formed exactly as the report forms a one-seed verdict (:func:`chanmusic.report.stats.item_gain`: the
paired bootstrap over recordings of the per-item files), on the primary metric and on each secondary metric
uncorrected and (secondaries) Holm-corrected as the report does (:func:`chanmusic.report.stats.verdict`); beside
it the window-level, unpaired interval the report used before (each arm's bootstrap over windows, combined as
independent errors) and the old rule "any metric beats, uncorrected". Prints and writes ``OUT/calibration.json``:
per metric, how many seeds fired, the rate, and the nominal rate (2.5%, one-sided). Nothing here is a timed test: it takes about
a minute per seed on 2 idle cores.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chanmusic.evaluation.intervals import bootstrap_ci95  # noqa: E402
from chanmusic.report.stats import ALPHA, item_gain, verdict  # noqa: E402
from chanmusic.results.items_file import ITEMS_FILE, items_metrics, paired_items, read_items  # noqa: E402
from chanmusic.results.layout import run_folder  # noqa: E402

E = ROOT / "experiments"


def write_spec(out: Path, seeds: int, epochs: int, jobs: int) -> Path:
    """A one-row spec (the linear reference of experiments/paper.yaml) with a ``calibration`` profile: the demo's
    data and budget, but no music in the EEG, no reconstruction, no figures."""
    raw = yaml.safe_load((E / "paper.yaml").read_text())
    row = next(r for r in raw["rows"] if r["name"] == "linear_reference")
    demo = raw["profiles"]["demo"]
    prof = {
        "description": "calibration: demo data with music_response false (no music in the EEG)",
        "seeds": seeds, "jobs": jobs, "base": demo["base"], "reconstruct": False, "interpret": [],
        "demo_data": {"root": "{out}/data/nmed-t", "seed": 0, "music_response": False},
        "step_timeout_s": 900,
        "set": {"data": {"root": "{out}/data/nmed-t", "cache_dir": "{out}/cache", "test_fraction": 0.2},
                "trainer": {"max_epochs": epochs, "log_every_n_steps": 10, "enable_model_summary": False,
                            "enable_progress_bar": False}},
    }
    spec = {"title": "calibration of the verdict (no music in the EEG)", "config_root": str(E),
            "metrics": raw.get("metrics"), "primary_metric": raw.get("primary_metric", "song_id"),
            "rows": [row], "profiles": {"calibration": prof}}
    path = out / "calibration_spec.yaml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def window_unpaired_fires(m, c) -> bool:
    """The old interval: each arm's window bootstrap, combined as independent normal errors; fires if above 0."""
    lm, hm = bootstrap_ci95(m)
    lc, hc = bootstrap_ci95(c)
    se = math.sqrt(((hm - lm) / 3.92) ** 2 + ((hc - lc) / 3.92) ** 2)
    return float(m.mean() - c.mean()) - 1.959964 * se > 0


def tally(out: Path, seeds: int, primary: str) -> dict:
    """Per metric: seeds where the paired, clustered verdict fired (uncorrected, and for the secondaries also with
    the report's Holm correction), and where the window-level unpaired one did; overall: seeds where the row's
    verdict fired (the primary metric) and where the old rule "any metric, uncorrected" would have."""
    per: dict[str, dict] = {}
    seeds_read, any_fired, any_old = 0, 0, 0
    for s in range(seeds):
        files = [run_folder(out, "linear_reference", s, bool(ctl)) / "align" / ITEMS_FILE for ctl in (0, 1)]
        if not all(f.is_file() for f in files):
            print(f"calibration: seed {s} has no per-item files (failed or not run): left out")
            continue
        seeds_read += 1
        arms = [read_items(f) for f in files]
        gains, old = {}, []
        for metric in items_metrics(arms[0]):
            try:
                m, c, rec = paired_items(arms[0], arms[1], metric)
            except ValueError:
                continue
            g = gains[metric] = item_gain([(None, m, c, rec)], seed=s)
            d = per.setdefault(metric, {"seeds": 0, "fired": 0, "fired_holm": 0, "fired_window_unpaired": 0,
                                        "gains": []})
            d["seeds"] += 1
            d["fired"] += int(g["ci95"] is not None and g["ci95"][0] > 0)
            old.append(window_unpaired_fires(m, c))
            d["fired_window_unpaired"] += int(old[-1])
            d["gains"].append(round(g["gain"], 4))
        v = verdict(gains, primary)
        for metric, sv in v["secondary"].items():
            per[metric]["fired_holm"] += int(sv["beats"])
        any_fired += int(any(g["ci95"] is not None and g["ci95"][0] > 0 for g in gains.values()))
        any_old += int(any(old))
    for metric, d in per.items():
        if metric == primary:  # the primary metric is not corrected: its verdict is the row's
            d["fired_holm"] = d["fired"]
        d["rate"] = d["fired"] / d["seeds"]
        d["rate_holm"] = d["fired_holm"] / d["seeds"]
        d["rate_window_unpaired"] = d["fired_window_unpaired"] / d["seeds"]
        d["role"] = "primary" if metric == primary else "secondary"
    return {"nominal": ALPHA, "primary_metric": primary, "seeds_read": seeds_read, "metrics": per,
            "any_metric_uncorrected": {"fired": any_fired, "fired_window_unpaired": any_old}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=20, help="split seeds (comparisons) to run; ≥ 20 for benchmarks/research.md")
    p.add_argument("--out", default="calibration_out", help="output folder (resumable: finished runs are kept)")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time")
    p.add_argument("--epochs", type=int, default=4, help="alignment epochs per run (the demo's budget: 4)")
    p.add_argument("--tally-only", action="store_true", help="count the verdicts of the runs already in --out")
    a = p.parse_args(argv)
    out = Path(a.out).resolve()
    spec = write_spec(out, a.seeds, a.epochs, a.jobs)
    t0 = time.time()
    if not a.tally_only:
        subprocess.run([sys.executable, "-m", "chanmusic.cli", "compare", "--config", str(spec), "--profile",
                        "calibration", "--out", str(out), "--no-report"], check=True, cwd=ROOT)
    res = tally(out, a.seeds, yaml.safe_load(spec.read_text())["primary_metric"])
    res.update(seeds=a.seeds, epochs=a.epochs, minutes=round((time.time() - t0) / 60, 1))
    (out / "calibration.json").write_text(json.dumps(res, indent=2))
    n = res["seeds_read"]
    print(f"\ncalibration: {n} of {a.seeds} split seeds read, no music in the EEG, nominal one-sided rate "
          f"{ALPHA:.1%}")
    for metric, d in res["metrics"].items():
        print(f"  {metric:<12} {d['role']:<10} fired {d['fired']}/{d['seeds']} ({d['rate']:.1%}), with Holm "
              f"{d['fired_holm']}/{d['seeds']}; window-level unpaired: {d['fired_window_unpaired']}/{d['seeds']} "
              f"({d['rate_window_unpaired']:.1%})")
    anyf = res["any_metric_uncorrected"]
    print(f"  any metric, uncorrected (the old rule): {anyf['fired']}/{n} paired over recordings, "
          f"{anyf['fired_window_unpaired']}/{n} window-level unpaired")
    print(f"  ({res['minutes']} min) -> {out / 'calibration.json'}")


if __name__ == "__main__":
    main()

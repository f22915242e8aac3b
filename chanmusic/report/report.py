"""``chanmusic report RUN_DIR``: the comparison's tables, plots and a self-contained static HTML report.

    chanmusic report OUT [--interpret] [--check] [--audio-samples N]

Reads ``OUT/spec.json`` and every run's ``status.json`` / ``metrics.json`` (written by ``chanmusic compare``)
and writes:

- ``OUT/results.md`` and ``OUT/results.csv``: per row × metric the mean ± std over seeds, the 95% CI
  (t-distribution over seeds; with one seed, over the run's distractor repeats — flagged, it is not seed
  variability), n, chance, the no-music control, the gain over it (paired by seed) and the paper's number.
  Failed rows stay in the table with the error's first line.
- ``OUT/plots/*.png``: one bar chart per metric and the ablation chart.
- ``OUT/report/index.html`` + ``OUT/report/assets/``: the table, the plots, the scalp maps and dissimilarity
  matrices (``OUT/interpretation``, made by ``--interpret`` or by ``compare``), and audio players for true
  vs reconstructed clips (where the reconstruction step wrote ``predictions/manifest.json|csv``) with their
  mel spectrograms and CLAP scores. Everything is copied into the folder and linked relatively: open the file
  directly, no server and no network.

``--check`` opens the report in headless Chromium and fails if any image or audio does not load
(:func:`check_in_browser`; also a screenshot ``report/screenshot.png``).
"""
from __future__ import annotations

import argparse
import csv
import html
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

DEFAULT_REPEATS = 10
# identification metrics: their std in metrics.json is over repeated distractor draws, not over items
REPEAT_METRIC = re.compile(r"^(id\d+|song\d+|genre\d+|within_song|mel_id\d+)(_.*)?$")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


# ------------------------------------------------------------------------------------------------ math
def t_quantile(df: int, q: float = 0.975) -> float:
    from scipy.stats import t

    return float(t.ppf(q, df))


def seed_summary(values: Sequence[float]) -> dict[str, Any]:
    """Mean, std (ddof=1) and 95% t-CI over per-seed values (k ≥ 2)."""
    v = np.asarray(values, dtype=np.float64)
    k = len(v)
    if k < 2:
        raise ValueError("seed_summary needs at least 2 seeds")
    mean, std = float(v.mean()), float(v.std(ddof=1))
    half = t_quantile(k - 1) * std / math.sqrt(k)
    return {"mean": mean, "std": std, "ci": (mean - half, mean + half), "k": k, "ci_kind": "seeds"}


def within_run_summary(mean: float, std0: float, r: int) -> dict[str, Any]:
    """One seed: the run's own spread. ``std0`` is the population std (ddof=0, as metrics.json stores it)
    over ``r`` repeats (or items); the CI is mean ± t(r−1)·s/√r with s the ddof=1 std."""
    if r < 2:
        return {"mean": mean, "std": std0, "ci": None, "k": 1, "ci_kind": "none"}
    s = std0 * math.sqrt(r / (r - 1))
    half = t_quantile(r - 1) * s / math.sqrt(r)
    return {"mean": mean, "std": std0, "ci": (mean - half, mean + half), "k": 1, "ci_kind": f"within-run (r={r})",
            "se": s / math.sqrt(r), "r": r}


def gain_summary(music: dict[int, dict], control: dict[int, dict], r_of: dict[int, int]) -> dict[str, Any] | None:
    """Gain of music over control. Paired by seed (t-CI over the per-seed differences) with ≥ 2 common seeds;
    with one, the within-run standard errors combined (df = r − 1)."""
    common = sorted(set(music) & set(control))
    if not common:
        return None
    d = [music[s]["mean"] - control[s]["mean"] for s in common]
    if len(common) >= 2:
        out = seed_summary(d)
        return {"gain": out["mean"], "ci": out["ci"], "ci_kind": "seeds (paired)", "k": len(common)}
    s = common[0]
    r = r_of.get(s, 0)
    if r < 2:
        return {"gain": d[0], "ci": None, "ci_kind": "none", "k": 1}
    se = math.sqrt(sum((m[s]["std"] * math.sqrt(r / (r - 1))) ** 2 / r for m in (music, control)))
    half = t_quantile(r - 1) * se
    return {"gain": d[0], "ci": (d[0] - half, d[0] + half), "ci_kind": f"within-run (r={r})", "k": 1}


# ------------------------------------------------------------------------------------------------ collect
@dataclass
class Cell:
    metric: str
    mean: float | None = None
    std: float | None = None
    ci: tuple[float, float] | None = None
    ci_kind: str = ""
    k: int = 0
    n: int | None = None
    chance: float | None = None
    control: float | None = None
    control_std: float | None = None
    control_ci: tuple[float, float] | None = None
    gain: float | None = None
    gain_ci: tuple[float, float] | None = None
    gain_ci_kind: str = ""
    paper: float | None = None


@dataclass
class RowResult:
    name: str
    label: str
    section: str
    status: str                      # done | partial | failed | running | not run
    error: str | None = None
    seeds_done: int = 0
    seeds_total: int = 0
    cells: dict[str, Cell] = field(default_factory=dict)
    run_dirs: list[Path] = field(default_factory=list)
    paper: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _read_json(p: Path) -> Any:
    try:
        return json.loads(Path(p).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def run_metrics(d: Path, status: dict | None) -> dict[str, dict]:
    """A run's metrics: the merged ones in its status, else every ``metrics.json`` in it (steps in order)."""
    if status and status.get("metrics"):
        return status["metrics"]
    merged: dict[str, dict] = {}
    for p in [d / "metrics.json"] + sorted(d.glob("*/metrics.json"), key=lambda q: (q.parent.name != "align", str(q))):
        m = _read_json(p)
        if isinstance(m, dict):
            merged.update({k: v for k, v in m.items() if isinstance(v, dict) and "mean" in v})
    return merged


def run_repeats(d: Path) -> int:
    """``id_repeats`` of the run's stage (its saved config.yaml), else the default 10."""
    import yaml

    for cfg in sorted(d.glob("*/config.yaml")) + [d / "config.yaml"]:
        try:
            c = yaml.safe_load(cfg.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        r = (((c.get("model") or {}).get("init_args") or {}).get("id_repeats"))
        if r:
            return int(r)
    return DEFAULT_REPEATS


def _r_for(metric: str, entry: dict, repeats: int) -> int:
    if entry.get("repeats"):
        return int(entry["repeats"])
    return repeats if REPEAT_METRIC.match(metric) else int(entry.get("n") or 0)


def load_spec_json(out: Path) -> dict:
    spec = _read_json(out / "spec.json")
    if spec is None:
        raise FileNotFoundError(f"{out / 'spec.json'}: not a `chanmusic compare` output folder")
    return spec


def collect(out: str | Path) -> tuple[dict, list[RowResult]]:
    """Aggregate every row of ``OUT/spec.json`` over its seeds (see the module docstring)."""
    out = Path(out)
    spec = load_spec_json(out)
    metrics = list(spec["metrics"])
    results = []
    for row in spec["rows"]:
        res = RowResult(row["name"], row.get("label", row["name"]), row.get("section", "main"), "not run",
                        paper=dict(row.get("paper") or {}), seeds_total=len(spec["seeds"]))
        per: dict[bool, dict[str, dict[int, dict]]] = {False: {}, True: {}}
        r_of: dict[int, int] = {}
        states, errors = [], []
        for seed in spec["seeds"]:
            for control in ((False, True) if row.get("control", True) else (False,)):
                d = out / "runs" / row["name"] / f"seed{seed}{'-control' if control else ''}"
                st = _read_json(d / "status.json")
                state = (st or {}).get("status", "not run" if not d.exists() else "running")
                states.append(state)
                if state == "failed":
                    step = (st or {}).get("failed_step")
                    errors.append(f"{'control ' if control else ''}seed{seed}{' ' + step if step else ''}: "
                                  f"{(st or {}).get('error') or 'failed'}")
                if state in ("running", "not run"):
                    continue
                if not control:
                    res.run_dirs.append(d)
                    if state == "done":
                        res.seeds_done += 1
                m = run_metrics(d, st)
                if not control:
                    r_of[seed] = run_repeats(d)
                for k, v in m.items():
                    per[control].setdefault(k, {})[seed] = v
        if states and all(s == "done" for s in states):
            res.status = "done"
        elif any(s == "failed" for s in states):
            res.status = "partial" if per[False] else "failed"
        elif any(s == "running" for s in states):
            res.status = "incomplete"
        elif any(s == "done" for s in states):
            res.status = "incomplete"
        res.error = errors[0] if errors else None
        if len(errors) > 1:
            res.notes.append(f"{len(errors)} runs failed")
        names = metrics + sorted(k for k in per[False] if k not in metrics)
        for k in names:
            res.cells[k] = _cell(k, per[False].get(k, {}), per[True].get(k, {}), r_of, res.paper.get(k))
        results.append(res)
    return spec, results


def _cell(metric: str, music: dict[int, dict], control: dict[int, dict], r_of: dict[int, int],
          paper: float | None) -> Cell:
    c = Cell(metric, paper=paper)
    if not music:
        return c
    seeds = sorted(music)
    first = music[seeds[0]]
    c.n, c.chance = first.get("n"), first.get("chance")
    r = {s: _r_for(metric, music[s], r_of.get(s, DEFAULT_REPEATS)) for s in seeds}
    if len(seeds) >= 2:
        s = seed_summary([music[x]["mean"] for x in seeds])
    else:
        s = within_run_summary(first["mean"], first.get("std") or 0.0, r[seeds[0]])
    c.mean, c.std, c.ci, c.ci_kind, c.k = s["mean"], s["std"], s["ci"], s["ci_kind"], s["k"]
    if control:
        cs = sorted(control)
        if len(cs) >= 2:
            cc = seed_summary([control[x]["mean"] for x in cs])
        else:
            cc = within_run_summary(control[cs[0]]["mean"], control[cs[0]].get("std") or 0.0,
                                    _r_for(metric, control[cs[0]], r_of.get(cs[0], DEFAULT_REPEATS)))
        c.control, c.control_std, c.control_ci = cc["mean"], cc["std"], cc["ci"]
        g = gain_summary(music, control, r)
        if g:
            c.gain, c.gain_ci, c.gain_ci_kind = g["gain"], g["ci"], g["ci_kind"]
    return c


# ------------------------------------------------------------------------------------------------ tables
def _f(x: float | None, sign: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    return f"{x:+.3f}" if sign else f"{x:.3f}"


def _ci(ci: tuple[float, float] | None) -> str:
    return f" [{_f(ci[0])}, {_f(ci[1])}]" if ci else ""


def status_text(r: RowResult) -> str:
    s = {"done": f"done ({r.seeds_done}/{r.seeds_total} seeds)", "not run": "not run",
         "incomplete": "incomplete (running or killed)"}.get(r.status, r.status)
    if r.status in ("failed", "partial") and r.error:
        s += f": {r.error}"
    return s


def chance_of(results: list[RowResult], metric: str) -> float | None:
    for r in results:
        c = r.cells.get(metric)
        if c and c.chance is not None:
            return c.chance
    return None


def table_lines(results: list[RowResult], metrics: list[str]) -> list[list[str]]:
    """Rows of the results table as cells: [model, line, status, *metrics]."""
    lines = [["chance", "", ""] + [_f(chance_of(results, m)) for m in metrics]]
    for r in results:
        failed = r.status == "failed" or r.status == "not run"
        ours = []
        for m in metrics:
            c = r.cells.get(m)
            if failed:
                ours.append("failed" if r.status == "failed" else "not run")
            elif c is None or c.mean is None:
                ours.append("—")
            else:
                ours.append(f"{_f(c.mean)} ± {_f(c.std)}{_ci(c.ci)}" + ("†" if c.k == 1 and c.ci_kind.startswith("within") else ""))
        lines.append([r.label, "ours", status_text(r)] + ours)
        if any(r.cells.get(m) and r.cells[m].control is not None for m in metrics):
            lines.append(["", "no-music control", ""] + [
                f"{_f(r.cells[m].control)} ± {_f(r.cells[m].control_std)}" if r.cells.get(m) and r.cells[m].control is not None
                else "—" for m in metrics])
            lines.append(["", "gain over control", ""] + [
                f"{_f(r.cells[m].gain, True)}{_ci(r.cells[m].gain_ci)}" if r.cells.get(m) and r.cells[m].gain is not None
                else "—" for m in metrics])
        if r.paper:
            lines.append(["", "paper", ""] + [_f(r.paper.get(m)) if m in r.paper else "" for m in metrics])
    return lines


def markdown_table(results: list[RowResult], metrics: list[str]) -> str:
    head = ["model", "", "status"] + metrics
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cells in table_lines(results, metrics):
        cells = [cells[0] if cells[0] != "chance" else "*chance*"] + cells[1:]
        if cells[1] == "gain over control":
            cells = cells[:3] + [f"**{x}**" if x not in ("—", "") else x for x in cells[3:]]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)


def notes(spec: dict, results: list[RowResult], random_models: dict[str, bool]) -> list[str]:
    k = len(spec["seeds"])
    out = [
        f"Profile **{spec['profile_name']}**: {' '.join(str(spec['profile'].get('description', '')).split())}",
        f"Cells: mean ± std over {k} seed(s) [95% CI, t-distribution over seeds]. "
        + ("† one seed: std and CI are the run's own spread over its repeated distractor draws (r per run, "
           "default 10; over test items for non-identification metrics) — NOT seed-to-seed variability. "
           if any(c.k == 1 and c.ci_kind.startswith("within") for r in results for c in r.cells.values()) else ""),
        "no-music control: the same EEG with each window's music target taken from later in the same song "
        "(`--data.control shift`): recording fingerprints kept, the music pairing broken. Only the gain over it is "
        "evidence that the model reads the music. Gain CIs are paired by seed (one seed: within-run).",
        "id50 / song14 / genre10 / within_song: identification in the aligned space (genre10 = label-based "
        "10-genre identification); genre_agreement: the paper's genre score (a genre classifier agrees on "
        "generated vs true audio). paper: the authors' reported numbers (" + (spec.get("paper_source") or "") + ").",
    ]
    if random_models.get("clap"):
        out.append("**The CLAP model was a tiny RANDOMLY INITIALISED network** (no pretrained weights offline): "
                   "the numbers show the pipeline learning above chance on this data, not real CLAP-space results.")
    if random_models.get("audioldm"):
        out.append("**The audio generator was a tiny RANDOMLY INITIALISED AudioLDM**: reconstructed clips are noise-like "
                   "and clap_score / ssim / psnr measure the pipeline, not reconstruction quality.")
    if random_models.get("demo"):
        out.append("**Data: synthetic NMED-T-format demo data** (datamodules.synthetic), not the real recordings.")
    flat = flat_metrics(results)
    if flat:
        out.append(f"**{', '.join(flat)}: the same for every row** (to 0.1 %, the audio oracle included): the generator's "
                   "output does not depend on its conditioning here, so these columns cannot rank the encoders.")
    return out


def flat_metrics(results: list[RowResult], metrics: Sequence[str] = ("clap_score", "ssim", "psnr"),
                 rel: float = 1e-3) -> list[str]:
    """Generated-audio metrics whose row means agree to ``rel`` across ≥ 3 rows (a generator that ignores the
    conditioning gives every row, the oracle included, the same score)."""
    flat = []
    for m in metrics:
        v = [r.cells[m].mean for r in results if r.cells.get(m) is not None and r.cells[m].mean is not None]
        if len(v) >= 3 and max(v) - min(v) <= rel * max(1.0, abs(float(np.mean(v)))):
            flat.append(m)
    return flat


def detect_random_models(out: Path, spec: dict) -> dict[str, bool]:
    """Was CLAP random (cache manifest ``clap_is_random``)? AudioLDM random (prediction manifests)? Demo data?"""
    import yaml

    flags = {"clap": False, "audioldm": False, "demo": bool(spec.get("profile", {}).get("demo_data"))}
    caches: set[Path] = set((out / "cache").glob("*/manifest.json"))
    for cfg in list((out / "runs").glob("*/seed*/*/config.yaml"))[:50]:
        try:
            c = yaml.safe_load(cfg.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        data = c.get("data") or {}
        if data.get("cache_dir"):
            caches |= set(Path(data["cache_dir"]).glob("*/manifest.json"))
        if data.get("clap") and str(data["clap"]).startswith("tiny-random"):
            flags["clap"] = True
        if data.get("root") and (Path(data["root"]) / "chanmusic_demo.json").exists():
            flags["demo"] = True
    for m in caches:
        man = _read_json(m) or {}
        if man.get("clap_is_random"):
            flags["clap"] = True
    for man in find_manifests(out):
        meta = man.get("meta") or {}
        if any(meta.get(k) for k in ("audioldm_is_random", "generator_is_random", "is_random")):
            flags["audioldm"] = True
        if meta.get("clap_is_random"):
            flags["clap"] = True
    return flags


def write_csv(path: Path, results: list[RowResult], metrics: list[str]) -> None:
    cols = ["section", "row", "label", "status", "error", "metric", "mean", "std", "ci_low", "ci_high", "ci_kind",
            "seeds", "n", "chance", "control_mean", "control_std", "gain", "gain_ci_low", "gain_ci_high",
            "gain_ci_kind", "paper"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in results:
            names = metrics + [m for m in r.cells if m not in metrics]
            for m in names:
                c = r.cells.get(m) or Cell(m, paper=r.paper.get(m))
                num = lambda x: "" if x is None else f"{x:.6g}"  # noqa: E731
                w.writerow([r.section, r.name, r.label, r.status, r.error or "", m, num(c.mean), num(c.std),
                            num(c.ci[0] if c.ci else None), num(c.ci[1] if c.ci else None), c.ci_kind, c.k,
                            "" if c.n is None else c.n, num(c.chance), num(c.control), num(c.control_std),
                            num(c.gain), num(c.gain_ci[0] if c.gain_ci else None),
                            num(c.gain_ci[1] if c.gain_ci else None), c.gain_ci_kind, num(c.paper)])


def _sections(spec: dict, results: list[RowResult]) -> tuple[list[RowResult], list[RowResult]]:
    main = [r for r in results if r.section == "main"]
    abl = [r for r in results if r.section == "ablation"]
    ref = next((r for r in results if r.name == spec.get("reference_row")), None)
    if abl and ref is not None:
        abl = [ref] + abl
    return main, abl


def write_plots(out: Path, spec: dict, results: list[RowResult]) -> list[Path]:
    from chanmusic.report import plots

    main, abl = _sections(spec, results)
    paths = []
    for m in spec.get("plot_metrics") or spec["metrics"]:
        items = [_bar_item(r, m) for r in main]
        if not any(it.get("mean") is not None for it in items):
            continue  # nothing measured (the paper's numbers alone are in the table)
        paths.append(plots.metric_bars(m, items, out / "plots" / f"metric_{m}.png",
                                       f"{m}: ours (95% CI) vs no-music control, paper and chance"))
    if abl:
        ms = [m for m in spec.get("ablation_metrics") or spec["metrics"]
              if any(r.cells.get(m) and r.cells[m].gain is not None for r in abl)]
        items = [{"label": r.label, "reference": r.name == spec.get("reference_row"), "failed": r.status == "failed",
                  "gains": {m: (r.cells[m].gain, r.cells[m].gain_ci) if r.cells.get(m) and r.cells[m].gain is not None
                            else None for m in ms}} for r in abl]
        if ms:
            paths.append(plots.ablation_chart(ms, items, out / "plots" / "ablations.png",
                                              "Ablations: gain over the no-music control (95% CI)"))
    return paths


def _bar_item(r: RowResult, m: str) -> dict:
    c = r.cells.get(m)
    return {"label": r.label, "mean": c.mean if c else None, "ci": c.ci if c else None,
            "control": c.control if c else None, "control_ci": c.control_ci if c else None,
            "paper": r.paper.get(m), "chance": c.chance if c else None,
            "failed": r.status in ("failed", "not run")}


def write_results(out: str | Path) -> tuple[dict, list[RowResult], list[Path]]:
    """``results.md``, ``results.csv`` and ``plots/`` of a comparison folder; returns (spec, results, plots)."""
    out = Path(out)
    spec, results = collect(out)
    metrics = list(spec["metrics"])
    main, abl = _sections(spec, results)
    random_models = detect_random_models(out, spec)
    parts = [f"# {spec['title']}", ""]
    parts += ["## Main table", "", markdown_table(main, metrics), ""]
    if abl:
        parts += [f"## Ablations (each changes one thing of `{spec.get('reference_row')}`)", "",
                  markdown_table(abl, metrics), ""]
    parts += ["## Notes", ""] + [f"- {n}" for n in notes(spec, results, random_models)] + [""]
    (out / "results.md").write_text("\n".join(parts))
    write_csv(out / "results.csv", results, metrics)
    return spec, results, write_plots(out, spec, results)


# ------------------------------------------------------------------------------------------------ audio
GEN_KEYS = ("generated", "generated_wav", "generated_path", "gen", "gen_wav", "pred_wav", "prediction",
            "reconstruction", "reconstructed", "recon_wav", "fake")
TRUE_KEYS = ("true", "true_wav", "true_path", "target", "target_wav", "ground_truth", "gt", "gt_wav",
             "reference", "real")
SCORE_KEYS = ("clap_score", "clap", "score", "clap_cosine")


def find_manifests(root: Path) -> list[dict]:
    """Every ``predictions/manifest.json|csv`` under ``root`` as ``{"path", "items": [dict], "meta": dict}``."""
    found = []
    for p in sorted(Path(root).rglob("predictions/manifest.*"), key=lambda q: (q.suffix.lower() != ".json", str(q))):
        if p.suffix.lower() not in (".json", ".csv"):
            continue
        m = read_manifest(p)
        if m is not None:
            found.append(m)
    return found


def read_manifest(p: Path) -> dict | None:
    """A prediction manifest: JSON (a list of items, or ``{"items"|"segments"|"predictions": [...], ...}``)
    or CSV (one item per line). Items name the generated and true wav (relative to the manifest's folder or
    absolute) and optionally the CLAP score and segment id."""
    try:
        if p.suffix.lower() == ".csv":
            with p.open(newline="") as f:
                items, meta = list(csv.DictReader(f)), {}
        else:
            d = json.loads(p.read_text())
            if isinstance(d, list):
                items, meta = d, {}
            else:
                key = next((k for k in ("items", "segments", "predictions", "clips") if isinstance(d.get(k), list)), None)
                items = d.get(key, []) if key else []
                meta = {k: v for k, v in d.items() if k != key}
                if isinstance(d.get("info"), dict):  # AudioPredictionWriter: run facts under "info"
                    meta = {**d["info"], **meta}
    except (OSError, json.JSONDecodeError, csv.Error):
        return None
    return {"path": p, "items": [i for i in items if isinstance(i, dict)], "meta": meta}


def _pick(item: dict, keys: Sequence[str]) -> Any:
    for k in keys:
        if item.get(k) not in (None, ""):
            return item[k]
    return None


def _resolve(path: Any, base: Path) -> Path | None:
    if path in (None, ""):
        return None
    p = Path(str(path))
    for cand in ([p] if p.is_absolute() else [base / p, base.parent / p, p]):
        if cand.is_file():
            return cand
    return None


def mel_png(wav: Path, png: Path, title: str = "") -> Path | None:
    """Log-mel spectrogram image of a wav (64 mels, 16 kHz analysis as the paper's SSIM/PSNR mels)."""
    try:
        import soundfile as sf

        audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
        audio = audio.mean(1)
        import librosa

        mel = librosa.feature.melspectrogram(y=audio, sr=sr, n_fft=1024, hop_length=160, n_mels=64,
                                             fmax=min(8000, sr // 2))
        db = librosa.power_to_db(mel + 1e-10, ref=np.max)
    except Exception:  # noqa: BLE001 - an unreadable file gets no image, the player still says so
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.6, 1.8))
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma",
              extent=(0, len(audio) / sr, 0, db.shape[0]))
    ax.set_xlabel("s", fontsize=7)
    ax.set_ylabel("mel", fontsize=7)
    ax.tick_params(labelsize=6)
    if title:
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png


def audio_samples(out: Path, row: RowResult, assets: Path, n: int) -> tuple[list[dict], str | None]:
    """Up to ``n`` (true, generated) clip pairs of the row's first run with a prediction manifest, copied into
    ``assets/audio/<row>/`` with mel images; or ([], reason)."""
    for d in row.run_dirs:
        mans = find_manifests(d)
        if not mans:
            continue
        man = mans[0]
        base = man["path"].parent
        good = []
        for it in man["items"]:
            g, t = _resolve(_pick(it, GEN_KEYS), base), _resolve(_pick(it, TRUE_KEYS), base)
            if g and t:
                good.append((it, g, t))
        if not good:
            return [], f"manifest {man['path'].name} lists no readable wav pairs"
        idx = np.unique(np.linspace(0, len(good) - 1, min(n, len(good))).round().astype(int))
        dest = assets / "audio" / row.name
        dest.mkdir(parents=True, exist_ok=True)
        out_items = []
        for j, i in enumerate(idx):
            it, g, t = good[i]
            seg = it.get("segment", it.get("id", i))
            tc, gc = dest / f"{j:02d}_true{t.suffix}", dest / f"{j:02d}_generated{g.suffix}"
            shutil.copyfile(t, tc)
            shutil.copyfile(g, gc)
            tm = mel_png(tc, dest / f"{j:02d}_true_mel.png", "true")
            gm = mel_png(gc, dest / f"{j:02d}_generated_mel.png", "reconstructed")
            score = _pick(it, SCORE_KEYS)
            try:
                score = float(score) if score is not None else None
            except ValueError:
                score = None
            out_items.append({"segment": seg, "true": tc, "generated": gc, "true_mel": tm, "generated_mel": gm,
                              "clap_score": score, "song": it.get("song_name") or it.get("song")})
        return out_items, None
    return [], "no audio written for this row"


# ------------------------------------------------------------------------------------------------ html
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1250px;color:#1a202c;padding:0 1em}
h1{font-size:1.5em} h2{margin-top:2em;border-bottom:1px solid #cbd5e0} h3{margin-bottom:.3em}
table{border-collapse:collapse;font-size:.82em;margin:.5em 0} th,td{border:1px solid #e2e8f0;padding:3px 6px;vertical-align:top}
th{background:#edf2f7} td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
tr.ours td{border-top:2px solid #a0aec0} tr.gain td{font-weight:600} tr.paper td{color:#c05621}
tr.chance td{color:#718096;font-style:italic} td.failed{color:#c53030}
.banner{background:#fffaf0;border:2px solid #dd6b20;padding:.6em 1em;margin:1em 0;border-radius:4px}
.err{color:#c53030;font-size:.85em} .note{color:#4a5568;font-size:.88em}
.grid{display:flex;flex-wrap:wrap;gap:12px} .grid figure{margin:0;border:1px solid #e2e8f0;padding:6px;background:#fff}
figure figcaption{font-size:.8em;color:#4a5568;max-width:480px}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:10px;border:1px solid #e2e8f0;padding:8px;margin:8px 0;max-width:900px}
.pair audio{width:100%} img{max-width:100%} .scroll{overflow-x:auto} small{color:#4a5568}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def html_table(results: list[RowResult], metrics: list[str]) -> str:
    head = "".join(f"<th>{_e(m)}</th>" for m in metrics)
    rows = [f"<div class='scroll'><table><tr><th>model</th><th></th><th>status</th>{head}</tr>"]
    for cells in table_lines(results, metrics):
        kind = {"chance": "chance", "ours": "ours", "no-music control": "control", "gain over control": "gain",
                "paper": "paper"}.get(cells[1] or ("chance" if cells[0] == "chance" else ""), "")
        tds = [f"<td>{_e(cells[0])}</td>", f"<td>{_e(cells[1])}</td>"]
        st = cells[2]
        tds.append(f"<td class='{'failed' if st.startswith(('failed', 'partial')) else ''}'>{_e(st)}</td>")
        tds += [f"<td class='num{' failed' if c in ('failed', 'not run') else ''}'>{_num_html(c)}</td>" for c in cells[3:]]
        rows.append(f"<tr class='{kind}'>" + "".join(tds) + "</tr>")
    rows.append("</table></div>")
    return "\n".join(rows)


def _num_html(cell: str) -> str:
    """A table cell with its CI on a second, smaller line."""
    if " [" in cell:
        value, ci = cell.split(" [", 1)
        return f"{_e(value)}<br><small>[{_e(ci)}</small>"
    return _e(cell)


def _copy_asset(src: Path, assets: Path, sub: str) -> str | None:
    if not src or not Path(src).is_file():
        return None
    dest = assets / sub / Path(src).name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if Path(src).resolve() != dest.resolve():
        shutil.copyfile(src, dest)
    return dest.relative_to(assets.parent).as_posix()


def build_report(out: str | Path, audio_per_row: int = 3) -> Path:
    """Write ``OUT/report/index.html`` (+ ``assets/``) from the comparison folder; returns the index path."""
    out = Path(out)
    spec, results, plot_paths = write_results(out)
    metrics = list(spec["metrics"])
    main, abl = _sections(spec, results)
    report = out / "report"
    assets = report / "assets"
    if assets.exists():
        shutil.rmtree(assets)
    assets.mkdir(parents=True)
    random_models = detect_random_models(out, spec)
    b = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(spec['title'])}</title>"
         f"<style>{CSS}</style></head><body>", f"<h1>{_e(spec['title'])}</h1>"]
    banners = []
    if random_models.get("clap") or random_models.get("audioldm"):
        which = " and ".join(x for x, f in (("CLAP", random_models.get("clap")),
                                             ("AudioLDM", random_models.get("audioldm"))) if f)
        banners.append(f"<b>Tiny random models.</b> The {which} used here {'was' if ' and ' not in which else 'were'} "
                       "tiny and randomly initialised (no pretrained weights offline). The numbers show the pipeline "
                       "working; they are not real CLAP-space results and the audio is not a real reconstruction.")
    if random_models.get("demo"):
        banners.append("<b>Synthetic demo data</b> (NMED-T format, datamodules.synthetic), not the real recordings: "
                       "numbers are not comparable to the paper's.")
    b += [f"<div class='banner'>{x}</div>" for x in banners]
    b.append(f"<p class='note'>Profile <b>{_e(spec['profile_name'])}</b>; seeds: {_e(len(spec['seeds']))}; "
             f"spec: {_e(Path(spec['path']).name)}.</p>")
    b += ["<h2>Main table</h2>", html_table(main, metrics)]
    if abl:
        b += [f"<h2>Ablations</h2><p class='note'>Each changes one thing of <code>{_e(spec.get('reference_row'))}</code> "
              "(first line).</p>", html_table(abl, metrics)]
    b.append("<ul class='note'>" + "".join(f"<li>{_md_inline(n)}</li>" for n in notes(spec, results, random_models))
             + "</ul>")
    # plots
    figs = []
    for p in plot_paths:
        rel = _copy_asset(p, assets, "plots")
        figs.append(f"<figure><img src='{_e(rel)}' alt='{_e(p.stem)}' width='560'><figcaption>{_e(p.stem)}"
                    "</figcaption></figure>")
    b += ["<h2>Plots</h2>", "<div class='grid'>" + "".join(figs) + "</div>" if figs else "<p>No plots.</p>"]
    # interpretation
    b.append("<h2>Interpretation: CLS→channel attention and song dissimilarity</h2>")
    b.append("<p class='note'>Scalp maps: the readout's CLS→channel attention averaged over the test windows "
             "(encoders without it have none). Matrices: 1 − cosine between per-song mean embeddings of the EEG "
             "(the aligned embedding) beside the same for the true CLAP embeddings of the music heard; the Spearman "
             "correlation of their upper triangles says how much of the music's song structure the EEG embedding "
             "carries (recording fingerprints can raise it too: compare with the control's numbers).</p>")
    inter = []
    for r in results:
        s = _read_json(out / "interpretation" / f"{r.name}.json")
        if not s:
            continue
        parts = [f"<h3>{_e(r.label)}</h3>"]
        if s.get("error"):
            parts.append(f"<p class='err'>interpretation failed: {_e(s['error'])}</p>")
        else:
            g = []
            if s.get("attention"):
                rel = _copy_asset(out / "interpretation" / s["attention"], assets, "interpretation")
                g.append(f"<figure><img src='{_e(rel)}' alt='attention {_e(r.name)}' width='340'><figcaption>"
                         f"top electrodes: {_e(', '.join(c for c, _ in (s.get('top_channels') or [])[:6]))}"
                         "</figcaption></figure>")
            elif s.get("attention_note"):
                g.append(f"<p class='note'>{_e(s['attention_note'])}</p>")
            if s.get("dissimilarity"):
                rel = _copy_asset(out / "interpretation" / s["dissimilarity"], assets, "interpretation")
                rho = s.get("rdm_spearman")
                g.append(f"<figure><img src='{_e(rel)}' alt='dissimilarity {_e(r.name)}' width='620'><figcaption>"
                         f"{_e(s.get('n_windows'))} test windows"
                         + (f"; Spearman r(EEG, music) = {rho:.2f}" if rho is not None else "") + "</figcaption></figure>")
            parts.append("<div class='grid'>" + "".join(g) + "</div>")
        inter.append("".join(parts))
    b += inter or ["<p class='note'>No interpretation figures (run <code>chanmusic report OUT --interpret</code>).</p>"]
    # audio
    b.append("<h2>Audio: true vs reconstructed</h2>")
    for r in results:
        items, why = audio_samples(out, r, assets, audio_per_row)
        b.append(f"<h3>{_e(r.label)}</h3>")
        if not items:
            b.append(f"<p class='note'>{_e(why)}</p>")
            continue
        for it in items:
            rel = lambda p: p.relative_to(report).as_posix() if p else None  # noqa: E731
            score = f"CLAP score {it['clap_score']:.3f}" if it.get("clap_score") is not None else "CLAP score n/a"
            cells = []
            for kind in ("true", "generated"):
                mel = rel(it[f"{kind}_mel"])
                cells.append(f"<div><b>{'true' if kind == 'true' else 'reconstructed'}</b><br>"
                             f"<audio controls preload='metadata' src='{_e(rel(it[kind]))}'></audio>"
                             + (f"<br><img src='{_e(mel)}' alt='mel {kind}' width='400'>" if mel else "") + "</div>")
            b.append(f"<p class='note'>segment {_e(it['segment'])}"
                     + (f" ({_e(it['song'])})" if it.get("song") is not None else "") + f" — {_e(score)}</p>"
                     + "<div class='pair'>" + "".join(cells) + "</div>")
    b.append("<h2>Files</h2><p class='note'>results.md, results.csv and the runs (status.json, config.yaml, "
             "metrics.json, log.txt per step) are in the comparison folder next to this report.</p>")
    b.append("</body></html>")
    index = report / "index.html"
    index.write_text("\n".join(b))
    return index


def _md_inline(text: str) -> str:
    s = _e(text)
    s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", s)


# ------------------------------------------------------------------------------------------------ browser
CHECK_SCRIPT = """
<script>
(function(){
  function state(){
    var out=[];
    document.querySelectorAll('img').forEach(function(e){
      out.push({tag:'img',src:e.getAttribute('src'),ok:!!(e.complete&&e.naturalWidth>0)});});
    document.querySelectorAll('audio').forEach(function(e){
      out.push({tag:'audio',src:e.getAttribute('src'),ok:e.readyState>=1&&!e.error,
                error:e.error?e.error.code:null});});
    var pre=document.getElementById('__load_status__')||document.createElement('pre');
    pre.id='__load_status__'; pre.textContent=JSON.stringify(out); document.body.appendChild(pre);
  }
  document.querySelectorAll('audio').forEach(function(e){e.addEventListener('error',state);
                                                          e.addEventListener('loadedmetadata',state);});
  window.addEventListener('load',function(){state();setTimeout(state,500);setTimeout(state,2000);});
})();
</script>
"""


def find_browser() -> str | None:
    env = os.environ.get("CHANMUSIC_BROWSER")
    if env and Path(env).is_file():
        return env
    for name in BROWSERS:
        p = shutil.which(name)
        if p:
            return p
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def _browser_cmd(browser: str, profile: str) -> list[str]:
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
            "--mute-audio", "--allow-file-access-from-files", f"--user-data-dir={profile}"]


def check_in_browser(index: str | Path, browser: str | None = None, screenshot: str | Path | None = None,
                     budget_ms: int = 8000, timeout_s: float = 90) -> dict[str, Any]:
    """Open a copy of ``index`` with a status script in headless Chromium and read back which ``<img>`` and
    ``<audio>`` elements loaded (``img.complete && naturalWidth > 0``; audio ``readyState ≥ 1`` without error).
    Returns ``{"elements": [...], "broken": [...], "screenshot": path | None}``."""
    browser = browser or find_browser()
    if not browser:
        raise FileNotFoundError("no Chromium binary (install it with .ci/setup-browser.sh)")
    index = Path(index).resolve()
    text = index.read_text()
    check = index.with_name("_load_check.html")
    check.write_text(text.replace("</body>", CHECK_SCRIPT + "</body>") if "</body>" in text else text + CHECK_SCRIPT)
    try:
        with tempfile.TemporaryDirectory(prefix="chanmusic-chromium-") as prof:
            cmd = _browser_cmd(browser, prof) + [f"--virtual-time-budget={budget_ms}", "--dump-dom", check.as_uri()]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
            m = re.search(r'<pre id="__load_status__">(.*?)</pre>', proc.stdout, re.S)
            if not m:
                raise RuntimeError(f"the browser returned no load status (exit {proc.returncode}): "
                                   f"{first_stderr_line(proc.stderr)}")
            elements = json.loads(html.unescape(m.group(1)))
            shot = None
            if screenshot:
                shot = Path(screenshot).resolve()
                subprocess.run(_browser_cmd(browser, prof) + [f"--virtual-time-budget={budget_ms}",
                                                              "--window-size=1280,2400", "--hide-scrollbars",
                                                              f"--screenshot={shot}", index.as_uri()],
                               capture_output=True, text=True, timeout=timeout_s)
                shot = shot if shot.is_file() else None
    finally:
        check.unlink(missing_ok=True)
    return {"elements": elements, "broken": [e for e in elements if not e.get("ok")], "screenshot": shot}


def first_stderr_line(s: str) -> str:
    lines = [l for l in (s or "").splitlines() if l.strip() and "dbus" not in l.lower()]
    return lines[-1][:200] if lines else ""


# ------------------------------------------------------------------------------------------------ main
def run_interpretation(out: str | Path, rows: Sequence[str] | None = None, timeout_s: float | None = 1800) -> bool:
    """Interpretation figures in a subprocess (model loading stays out of the runner's process)."""
    cmd = [sys.executable, "-m", "chanmusic.report.plots", "interpret", str(out)] + (["--rows", ",".join(rows)] if rows else [])
    print("[report] interpretation figures (scalp maps, dissimilarity matrices) ...")
    try:
        proc = subprocess.run(cmd, timeout=timeout_s)
        return proc.returncode == 0
    except subprocess.TimeoutExpired:
        print("[report] interpretation timed out", file=sys.stderr)
        return False


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="chanmusic report", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a `chanmusic compare` output folder")
    p.add_argument("--interpret", action="store_true", help="(re)compute the scalp maps and dissimilarity matrices")
    p.add_argument("--audio-samples", type=int, default=3, help="clip pairs per row in the report")
    p.add_argument("--check", action="store_true", help="open the report in headless Chromium; fail on broken links")
    a = p.parse_args(argv)
    out = Path(a.run_dir)
    if a.interpret:
        run_interpretation(out)
    index = build_report(out, a.audio_samples)
    print(f"[report] {out / 'results.md'}\n[report] {index}")
    if a.check:
        res = check_in_browser(index, screenshot=index.parent / "screenshot.png")
        print(f"[report] browser check: {len(res['elements'])} elements, {len(res['broken'])} broken")
        for e in res["broken"]:
            print(f"[report]   broken {e['tag']}: {e['src']}")
        if res["broken"]:
            sys.exit(1)


if __name__ == "__main__":
    main()

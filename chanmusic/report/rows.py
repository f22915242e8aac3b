"""Reading a ``chanmusic compare`` output folder into one :class:`RowResult` per row of its table.

``OUT/spec.json`` names the rows and seeds; each run's ``status.json`` (and ``metrics.json`` files) give its
state and metrics, aggregated per metric into a :class:`Cell` (mean ± std over seeds with a 95% CI, the no-music
control and the gain over it; see :mod:`chanmusic.report.stats`). Also: which models were tiny random ones.

The gain over the control and the verdict come from the per-item files (``items.csv``, paired item by item;
:func:`chanmusic.report.stats.item_gain`): "beats its no-music control" is decided on the spec's
``primary_metric``, the other identifications are secondary, Holm-corrected (:func:`chanmusic.report.stats.verdict`).
Each arm's checkpoint step (``metrics.json``'s ``"checkpoint"``) is collected so the table can show them equal.

Intervals (``ci95``): with two or more seeds a cell's interval is the t-interval over seeds (``ci95_kind``
"seeds"); with one seed it is the run's own 95% bootstrap interval over test recordings (``ci95`` in ``metrics.json``,
``ci95_kind`` "test items"). ``item_ci95`` keeps the runs' bootstrap intervals (averaged over seeds) beside the seed
interval. Metrics whose class count depends on the data (``song_id``, ``genre_id``) carry the ``n_way`` they used;
the paper's number is shown beside them only where the count is the paper's (the metric registry's paper names,
:mod:`chanmusic.results.registry`). Run folders are found by :mod:`chanmusic.results.layout`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chanmusic.evaluation.collapse import is_collapsed
from chanmusic.report.manifest import find_manifests
from chanmusic.report.stats import gain_summary, item_gain, seed_summary, verdict, within_run_summary
from chanmusic.results.checkpoint_rule import FIT_DONE
from chanmusic.results.items_file import ITEMS_FILE, items_metrics, paired_items, read_items
from chanmusic.results.layout import RUNS, run_folder, step_folder, units
from chanmusic.results.metrics_file import METRICS_FILE, metric_entries, read_json
from chanmusic.results.registry import paper_name, std_over_draws

DEFAULT_REPEATS = 10


@dataclass
class Cell:
    metric: str
    mean: float | None = None
    std: float | None = None
    ci95: tuple[float, float] | None = None
    ci95_kind: str = ""
    k: int = 0
    n: int | None = None
    chance: float | None = None
    control: float | None = None
    control_std: float | None = None
    control_ci95: tuple[float, float] | None = None
    gain: float | None = None
    gain_ci95: tuple[float, float] | None = None
    gain_ci95_kind: str = ""
    paper: float | None = None
    n_way: int | None = None
    item_ci95: tuple[float, float] | None = None
    gain_p: float | None = None      # one-sided p of gain <= 0 (per-item files)
    gain_p_holm: float | None = None  # Holm-adjusted over the secondary metrics


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
    verdict: dict[str, Any] | None = None           # stats.verdict on the primary metric
    steps: dict[str, dict[Any, int]] = field(default_factory=dict)  # {"music"|"control": {replicate: step}}
    collapsed: list[str] = field(default_factory=list)         # the runs whose embeddings collapsed ("control seed0")


def run_steps(d: Path) -> int | None:
    """The optimiser step a run was scored at: its checkpoint record (``metrics.json``'s ``"checkpoint"`` or the
    runner's record of the finished fit, :data:`FIT_DONE`); ``None`` when neither says (nothing trained, older runs)."""
    for step in sorted(d.glob("*/")) + [d]:
        for name in (METRICS_FILE, FIT_DONE):
            m = read_json(step / name)
            if isinstance(m, dict):
                v = (m.get("checkpoint") if isinstance(m.get("checkpoint"), dict) else m).get("step")
                if isinstance(v, int) and not isinstance(v, bool):
                    return v
    return None


def run_collapsed(m: dict[str, dict]) -> float | None:
    """The run's mean pairwise 1 - cos when its test embeddings collapsed (:func:`is_collapsed`), else ``None``."""
    spread, rank = m.get("embedding_spread"), m.get("embedding_rank")
    if not isinstance(spread, dict) or spread.get("mean") is None:
        return None
    r = rank.get("mean") if isinstance(rank, dict) and rank.get("mean") is not None else float("inf")
    return float(spread["mean"]) if is_collapsed(float(spread["mean"]), float(r)) else None


def run_metrics(d: Path, status: dict | None) -> dict[str, dict]:
    """A run's metrics: the merged ones in its status, else every ``metrics.json`` in it (steps in order)."""
    if status and status.get("metrics"):
        return status["metrics"]
    merged: dict[str, dict] = {}
    steps = sorted(d.glob(f"*/{METRICS_FILE}"), key=lambda q: (q.parent != step_folder(d, "align"), str(q)))
    for p in [d / METRICS_FILE] + steps:
        m = read_json(p)
        if isinstance(m, dict):
            merged.update(metric_entries(m))
    return merged


def paper_value(paper: dict[str, float], metric: str, n_way: int | None) -> float | None:
    """The paper's number for ``metric``: by name, or under the paper's name where the class count matches."""
    if metric in paper:
        return paper[metric]
    alias = paper_name(metric)
    return paper.get(alias.name) if alias is not None and n_way == alias.n_way else None


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
    return repeats if std_over_draws(metric) else int(entry.get("n") or 0)


def load_spec_json(out: Path) -> dict:
    """The comparison's ``OUT/spec.json`` (FileNotFoundError when ``out`` is not a compare folder)."""
    spec = read_json(out / "spec.json")
    if spec is None:
        raise FileNotFoundError(f"{out / 'spec.json'}: not a `chanmusic compare` output folder")
    return spec


def collect(out: str | Path, fold: int | None = None) -> tuple[dict, list[RowResult]]:
    """Aggregate every row of ``OUT/spec.json`` over its seeds (see the module docstring); pooled over the folds,
    or the replicates of one ``fold`` only (the per-fold tables, :mod:`chanmusic.report.folds`)."""
    out = Path(out)
    spec = load_spec_json(out)
    metrics = list(spec["metrics"])
    results = []
    reps = [u for u in units(spec) if fold is None or u[1] == fold]
    for row in spec["rows"]:
        res = RowResult(row["name"], row.get("label", row["name"]), row.get("section", "main"), "not run",
                        paper=dict(row.get("paper") or {}), seeds_total=len(reps))
        per: dict[bool, dict[str, dict[Any, dict]]] = {False: {}, True: {}}
        items: dict[Any, dict[bool, Any]] = {}
        r_of: dict[Any, int] = {}
        states, errors = [], []
        for seed, fold, sd in reps:
            for control in ((False, True) if row.get("control", True) else (False,)):
                d = run_folder(out, row["name"], sd, control, fold)
                st = read_json(d / "status.json")
                state = (st or {}).get("status", "not run" if not d.exists() else "running")
                states.append(state)
                if state == "failed":
                    step = (st or {}).get("failed_step")
                    where = (f"fold{fold} " if fold is not None else "") + f"seed{sd}"
                    errors.append(f"{'control ' if control else ''}{where}{' ' + step if step else ''}: "
                                  f"{(st or {}).get('error') or 'failed'}")
                if state in ("running", "not run"):
                    continue
                if not control:
                    res.run_dirs.append(d)
                    if state == "done":
                        res.seeds_done += 1
                m = run_metrics(d, st)
                step_dir = step_folder(d, row.get("kind", "align"))
                n_steps = run_steps(d)
                if n_steps is not None:
                    res.steps.setdefault("control" if control else "music", {})[seed] = n_steps
                if run_collapsed(m) is not None:  # per run: every seed, the control included
                    where = (f"fold{fold} " if fold is not None else "") + f"seed{sd}"
                    res.collapsed.append(f"{'control ' if control else ''}{where}")
                if (step_dir / ITEMS_FILE).is_file() and state == "done":
                    items.setdefault(seed, {"fold": fold})[control] = read_items(step_dir / ITEMS_FILE)
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
            res.cells[k] = _cell(k, per[False].get(k, {}), per[True].get(k, {}), r_of, res.paper)
        if row.get("control", True):
            _item_gains(res, items, spec.get("primary_metric") or "song_id")
        results.append(res)
    return spec, results


def _item_gains(res: RowResult, items: dict[Any, dict], primary: str) -> None:
    """Gains from the per-item files of every replicate with both arms (overriding the means-based ones), and the
    row's verdict on ``primary``. A replicate missing one arm's file leaves the row without an item-based gain."""
    both = [u for u in items.values() if False in u and True in u]
    if not both or len(both) != len(items):
        if items:
            res.notes.append("per-item files missing for some runs: gains from metrics.json means, no verdict")
        return
    gains: dict[str, dict[str, Any]] = {}
    for metric in items_metrics(both[0][False]):
        try:
            pairs = [(u["fold"], *paired_items(u[False], u[True], metric)) for u in both]
        except (KeyError, ValueError):
            continue
        g = item_gain(pairs)
        gains[metric] = g
        c = res.cells.setdefault(metric, Cell(metric))
        c.gain, c.gain_ci95, c.gain_ci95_kind, c.gain_p = g["gain"], g["ci95"], g["ci95_kind"], g["p"]
    res.verdict = verdict(gains, primary)
    for m, v in res.verdict["secondary"].items():
        res.cells[m].gain_p_holm = v["p_holm"]


def _entry_ci95(entry: dict) -> tuple[float, float] | None:
    ci95 = entry.get("ci95")
    return (float(ci95[0]), float(ci95[1])) if isinstance(ci95, (list, tuple)) and None not in ci95[:2] else None


def _one_seed(metric: str, entry: dict, r: int) -> dict[str, Any]:
    """One seed: the run's bootstrap interval over test items (``ci95``); older files: the within-run spread."""
    ci95 = _entry_ci95(entry)
    if ci95 is not None:
        return {"mean": entry["mean"], "std": None, "ci95": ci95, "ci95_kind": "test items (bootstrap)", "k": 1}
    return within_run_summary(entry["mean"], entry.get("std") or 0.0, r)


def _cell(metric: str, music: dict[int, dict], control: dict[int, dict], r_of: dict[int, int],
          paper: dict[str, float]) -> Cell:
    c = Cell(metric)
    if not music:
        c.paper = paper_value(paper, metric, None) if paper_name(metric) is None else None
        return c
    seeds = sorted(music)
    first = music[seeds[0]]
    c.n, c.chance, c.n_way = first.get("n"), first.get("chance"), first.get("n_way")
    c.paper = paper_value(paper, metric, c.n_way)
    items = [_entry_ci95(music[x]) for x in seeds]
    if all(items):
        c.item_ci95 = (sum(i[0] for i in items) / len(items), sum(i[1] for i in items) / len(items))
    r = {s: _r_for(metric, music[s], r_of.get(s, DEFAULT_REPEATS)) for s in seeds}
    if len(seeds) >= 2:
        s = seed_summary([music[x]["mean"] for x in seeds])
    else:
        s = _one_seed(metric, first, r[seeds[0]])
    c.mean, c.std, c.ci95, c.ci95_kind, c.k = s["mean"], s["std"], s["ci95"], s["ci95_kind"], s["k"]
    if control:
        cs = sorted(control)
        if len(cs) >= 2:
            cc = seed_summary([control[x]["mean"] for x in cs])
        else:
            cc = _one_seed(metric, control[cs[0]], _r_for(metric, control[cs[0]], r_of.get(cs[0], DEFAULT_REPEATS)))
        c.control, c.control_std, c.control_ci95 = cc["mean"], cc["std"], cc["ci95"]
        g = gain_summary(music, control, r)
        if g:
            c.gain, c.gain_ci95, c.gain_ci95_kind = g["gain"], g["ci95"], g["ci95_kind"]
    return c


def sections(spec: dict, results: list[RowResult]) -> tuple[list[RowResult], list[RowResult]]:
    """(main rows, ablation rows); the ablation table starts with the reference row when there is one."""
    main = [r for r in results if r.section == "main"]
    abl = [r for r in results if r.section == "ablation"]
    ref = next((r for r in results if r.name == spec.get("reference_row")), None)
    if abl and ref is not None:
        abl = [ref] + abl
    return main, abl


def detect_random_models(out: Path, spec: dict) -> dict[str, bool]:
    """Was CLAP random (cache manifest ``clap_is_random``)? AudioLDM random (prediction manifests)? Demo data?"""
    import yaml

    flags = {"clap": False, "audioldm": False, "demo": bool(spec.get("profile", {}).get("demo_data"))}
    caches: set[Path] = set((out / "cache").glob("*/manifest.json"))
    for cfg in list((out / RUNS).glob("*/seed*/*/config.yaml"))[:50]:
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
        man = read_json(m) or {}
        if man.get("clap_is_random"):
            flags["clap"] = True
    for man in find_manifests(out):
        meta = man.get("meta") or {}
        if any(meta.get(k) for k in ("audioldm_is_random", "generator_is_random", "is_random")):
            flags["audioldm"] = True
        if meta.get("clap_is_random"):
            flags["clap"] = True
    return flags

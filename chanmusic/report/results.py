"""The result files of a comparison folder: ``OUT/results.md``, ``OUT/results.csv`` and ``OUT/plots/*.png``."""
from __future__ import annotations

from pathlib import Path

from chanmusic.core.files import atomic_write_text
from chanmusic.report import plots
from chanmusic.report.console import gain_verdicts
from chanmusic.report.folds import fold_markdown
from chanmusic.report.rows import RowResult, collect, detect_random_models, sections
from chanmusic.report.tables import markdown_table, notes, write_csv


def write_plots(out: Path, spec: dict, results: list[RowResult]) -> list[Path]:
    """One bar chart per measured metric of the main rows, and the ablations' gain chart; returns the paths."""
    main, abl = sections(spec, results)
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
                  "gains": {m: (r.cells[m].gain, r.cells[m].gain_ci95) if r.cells.get(m) and r.cells[m].gain is not None
                            else None for m in ms}} for r in abl]
        if ms:
            paths.append(plots.ablation_chart(ms, items, out / "plots" / "ablations.png",
                                              "Ablations: gain over the no-music control (95% CI)"))
    return paths


def _bar_item(r: RowResult, m: str) -> dict:
    c = r.cells.get(m)
    return {"label": r.label, "mean": c.mean if c else None, "ci95": c.ci95 if c else None,
            "control": c.control if c else None, "control_ci95": c.control_ci95 if c else None,
            "paper": c.paper if c else r.paper.get(m), "chance": c.chance if c else None,
            "failed": r.status in ("failed", "not run")}


def write_results(out: str | Path) -> tuple[dict, list[RowResult], list[Path]]:
    """``results.md``, ``results.csv`` and ``plots/`` of a comparison folder; returns (spec, results, plots)."""
    out = Path(out)
    spec, results = collect(out)
    metrics = list(spec["metrics"])
    main, abl = sections(spec, results)
    random_models = detect_random_models(out, spec)
    parts = [f"# {spec['title']}", ""]
    parts += ["## Main table", "", markdown_table(main, metrics), ""]
    if abl:
        parts += [f"## Ablations (each changes one thing of `{spec.get('reference_row')}`)", "",
                  markdown_table(abl, metrics), ""]
    primary = spec.get("primary_metric") or "song_id"
    verdicts = gain_verdicts(results, primary)
    if verdicts:
        parts += [f"## Verdicts (primary metric: `{primary}`; the others secondary, Holm-corrected)", ""]
        parts += [f"- {v.strip()}" for v in verdicts] + [""]
    parts += fold_markdown(out, spec, metrics, primary)
    parts += ["## Notes", ""] + [f"- {n}" for n in notes(spec, results, random_models)] + [""]
    atomic_write_text(out / "results.md", "\n".join(parts))   # whole or not at all (a full disk, a kill)
    write_csv(out / "results.csv", results, metrics)
    return spec, results, write_plots(out, spec, results)

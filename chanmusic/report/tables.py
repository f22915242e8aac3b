"""The results table as text: cells of each line, Markdown (``results.md``), CSV (``results.csv``), and its notes.

:func:`table_lines` is the one layout (chance line; per row: ours, no-music control, gain over control, paper);
Markdown and the HTML page (:mod:`chanmusic.report.html`) both render it.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from chanmusic.core.files import atomic_write_text
from chanmusic.report.recipe import recipe_note
from chanmusic.report.rows import Cell, RowResult
from chanmusic.report.steps import steps_text
from chanmusic.results.registry import paper_name


def _f(x: float | None, sign: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    return f"{x:+.3f}" if sign else f"{x:.3f}"


def _ci95(ci95: tuple[float, float] | None) -> str:
    return f" [{_f(ci95[0])}, {_f(ci95[1])}]" if ci95 else ""


def metric_header(results: list[RowResult], metric: str) -> str:
    """A column's name: the paper's name where the class count is the paper's (``song_id`` 14-way -> ``song14``),
    else the metric with the count it used (``song_id (10-way)``)."""
    ways = {r.cells[metric].n_way for r in results if r.cells.get(metric) and r.cells[metric].n_way}
    alias = paper_name(metric)
    if alias is None or not ways:
        return metric
    if ways == {alias.n_way}:
        return alias.name
    return f"{metric} ({'/'.join(str(w) for w in sorted(ways))}-way)"


def _value(c: Cell) -> str:
    """``mean ± std [CI]`` over seeds; one seed: ``mean [CI]†`` (the run's own interval)."""
    spread = f" ± {_f(c.std)}" if c.std is not None and c.k >= 2 or c.ci95_kind.startswith("within") else ""
    return f"{_f(c.mean)}{spread}{_ci95(c.ci95)}" + ("†" if c.k == 1 and c.ci95 is not None else "")


def status_text(r: RowResult) -> str:
    """The status column: ``done (k/K seeds)``, ``not run``, ``incomplete ...``, or ``failed: <error>``."""
    s = {"done": f"done ({r.seeds_done}/{r.seeds_total} seeds)", "not run": "not run",
         "incomplete": "incomplete (running or killed)"}.get(r.status, r.status)
    if r.status in ("failed", "partial") and r.error:
        s += f": {r.error}"
    if r.steps:  # the optimiser step each arm was scored at, so rows given different budgets are visible
        s += f"; steps {steps_text(r.steps)}"
    if r.collapsed:  # per run, controls and seeds included (a collapsed control inflates the gain)
        s += f"; COLLAPSED embeddings: {', '.join(r.collapsed)}"
    return s


def chance_of(results: list[RowResult], metric: str) -> float | None:
    """The first chance level any row reports for ``metric``."""
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
                ours.append(_value(c))
        lines.append([r.label, "ours", status_text(r)] + ours)
        if any(r.cells.get(m) and r.cells[m].control is not None for m in metrics):
            lines.append(["", "no-music control", ""] + [
                (f"{_f(r.cells[m].control)} ± {_f(r.cells[m].control_std)}" if r.cells[m].control_std is not None
                 else f"{_f(r.cells[m].control)}{_ci95(r.cells[m].control_ci95)}")
                if r.cells.get(m) and r.cells[m].control is not None else "—" for m in metrics])
            lines.append(["", "gain over control", ""] + [
                f"{_f(r.cells[m].gain, True)}{_ci95(r.cells[m].gain_ci95)}"
                if r.cells.get(m) and r.cells[m].gain is not None else "—" for m in metrics])
        if r.paper:
            lines.append(["", "paper", ""] + [_f(r.cells[m].paper) if r.cells.get(m) and r.cells[m].paper is not None
                                              else "" for m in metrics])
    return lines


def gain_cell(cell: str) -> str:
    """A gain cell ``"+0.047 [0.025, 0.070]"`` in bold when its 95% interval lies above 0, as it is otherwise: bold
    means "above its control" on that metric (uncorrected; the verdict lines say which metric decides)."""
    lo = re.search(r"\[\s*([-+−]?[0-9.]+)\s*,", cell)
    return f"**{cell}**" if lo and float(lo.group(1).replace("−", "-")) > 0 else cell


def markdown_table(results: list[RowResult], metrics: list[str]) -> str:
    """:func:`table_lines` as a Markdown table (a gain in bold where its interval lies above 0)."""
    head = ["model", "", "status"] + [metric_header(results, m) for m in metrics]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cells in table_lines(results, metrics):
        cells = [cells[0] if cells[0] != "chance" else "*chance*"] + cells[1:]
        if cells[1] == "gain over control":
            cells = cells[:3] + [gain_cell(x) for x in cells[3:]]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)


def notes(spec: dict, results: list[RowResult], random_models: dict[str, bool]) -> list[str]:
    """The notes under the table (Markdown inline: ``**bold**`` and ``code``)."""
    k = len(spec["seeds"])
    out = [
        f"Profile **{spec['profile_name']}**: {' '.join(str(spec['profile'].get('description', '')).split())}",
        (f"Cells: mean ± std over {k} seeds [95% CI over seeds, t-distribution]; each run's own 95% bootstrap "
         f"interval over test recordings is in results.csv (item_ci_low/high). " if k >= 2 else "Cells: one seed. ")
        + ("† one seed: the interval is the run's 95% bootstrap interval over test recordings (seeded) — how much the "
           "number moves with another draw of test recordings, NOT seed-to-seed variability. "
           if any(c.k == 1 and c.ci95_kind.startswith("test items") for r in results for c in r.cells.values()) else "")
        + ("† (older runs) one seed: std and CI are the run's own spread over its repeated distractor draws — NOT "
           "an uncertainty of the estimate. "
           if any(c.k == 1 and c.ci95_kind.startswith("within") for r in results for c in r.cells.values()) else ""),
        "no-music control: the same EEG with each recording's music targets circularly shifted by its own seeded "
        "amount (`--data.control shift`): recording fingerprints kept, the music pairing broken for every recording "
        "separately (a response shared across subjects cannot survive it). Only the gain over it is evidence that "
        "the model reads the music.",
        verdict_note(spec, results),
        "id50 / song_id / genre_id / within_song: identification in the aligned space; song_id and genre_id use "
        "every song / genre present (the column says how many; song_id is named song14 where the count is the "
        "paper's, i.e. on NMED-T + NMED-H pooled); genre_id is label-based, with distractors of the item's own dataset "
        "only (never the paper's genre10); id50_time draws its distractors from other songs at the same time since "
        "onset, so onset-locked signals cannot help it; genre_agreement is the paper's genre "
        "score (a genre classifier agrees on generated vs true audio). paper: the authors' reported numbers ("
        + (spec.get("paper_source") or "") + "), shown only where the class count matches.",
    ]
    said = recipe_note(spec, results)
    if said:
        out.append(said)
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


def verdict_note(spec: dict, results: list[RowResult]) -> str:
    """What a verdict means here: the primary metric, how the gain's interval was formed, the checkpoint rule."""
    primary = spec.get("primary_metric") or "song_id"
    steps = sorted({f"{r.label.split(' (')[0]}: {steps_text(r.steps)}" for r in results if r.steps})
    return (f"**Verdict on `{primary}` (the primary metric)**: a row beats its no-music control when the 95% "
            "interval of its gain is above 0. Gains come from the per-item files (items.csv), music and control paired "
            "item by item: one seed, a bootstrap over recordings; several, over seeds (each seed its own split_seed: "
            "its own test windows and control shifts; with folds, seeds averaged within a fold). Every ci95 of one "
            "run resamples recordings. The other identifications are secondary: one-sided p-values Holm-corrected "
            "(results.csv: gain_p, gain_p_holm). Checkpoint rule: the last step of the budget, music and control alike"
            + (f" ({'; '.join(steps)})" if steps else "") + " (docs/protocols.md, \"What a verdict means\").")


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


def write_csv(path: Path, results: list[RowResult], metrics: list[str]) -> None:
    """``results.csv``: one line per row × metric with every number of its cell."""
    cols = ["section", "row", "label", "status", "error", "metric", "n_way", "mean", "std", "ci_low", "ci_high",
            "ci_kind", "item_ci_low", "item_ci_high", "seeds", "n", "chance", "control_mean", "control_std", "gain",
            "gain_ci_low", "gain_ci_high", "gain_ci_kind", "gain_p", "gain_p_holm", "role", "paper"]
    f = io.StringIO(newline="")   # written whole and atomically: a full disk or a kill leaves no half file
    w = csv.writer(f)
    w.writerow(cols)
    for r in results:
        names = metrics + [m for m in r.cells if m not in metrics]
        for m in names:
            c = r.cells.get(m) or Cell(m, paper=r.paper.get(m))
            num = lambda x: "" if x is None else f"{x:.6g}"  # noqa: E731
            w.writerow([r.section, r.name, r.label, r.status, r.error or "", m, "" if c.n_way is None else c.n_way,
                        num(c.mean), num(c.std),
                        num(c.ci95[0] if c.ci95 else None), num(c.ci95[1] if c.ci95 else None), c.ci95_kind,
                        num(c.item_ci95[0] if c.item_ci95 else None), num(c.item_ci95[1] if c.item_ci95 else None), c.k,
                        "" if c.n is None else c.n, num(c.chance), num(c.control), num(c.control_std),
                        num(c.gain), num(c.gain_ci95[0] if c.gain_ci95 else None),
                        num(c.gain_ci95[1] if c.gain_ci95 else None), c.gain_ci95_kind, num(c.gain_p),
                        num(c.gain_p_holm), _role(r, m), num(c.paper)])
    atomic_write_text(path, f.getvalue())


def _role(r: RowResult, metric: str) -> str:
    """``primary`` / ``secondary`` for the verdict's metrics of a row, else empty."""
    v = r.verdict or {}
    return "primary" if v.get("primary") == metric else "secondary" if metric in (v.get("secondary") or {}) else ""

"""The end of a comparison in the terminal: the results table (with intervals), each row's gain over its no-music
control in words, the notes that change how to read it, and the report as a ``file://`` link.

The table is :func:`chanmusic.report.tables.table_lines` (the one layout, as in ``results.md`` and the HTML page),
cut to the metrics that fit a terminal.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from chanmusic.report.rows import RowResult, detect_random_models, sections
from chanmusic.report.steps import steps_text
from chanmusic.report.tables import _ci95, _f, notes, table_lines



def console_metrics(spec: dict, results: list[RowResult], n: int = 4) -> list[str]:
    """The profile's (or spec's) ``console_metrics``, else the first ``n`` table metrics any row measured."""
    chosen = (spec.get("profile") or {}).get("console_metrics") or spec.get("console_metrics")
    if chosen:
        return list(chosen)
    measured = [m for m in spec["metrics"] if any(r.cells.get(m) and r.cells[m].mean is not None for r in results)]
    return measured[:n]


def short_label(label: str, width: int = 24) -> str:
    """The row label up to its first parenthesis, at most ``width`` characters."""
    s = label.split(" (")[0].strip()
    return s if len(s) <= width else s[:width - 1] + "…"


def _terminal(cell: str) -> str:
    """A table cell for the terminal: ``mean [CI]`` (the std is in results.md)."""
    return re.sub(r" ± [-\d.—]+", "", cell)


def unique_short_labels(results: list[RowResult], width: int = 24) -> dict[str, str]:
    """``{label: short}``: :func:`short_label`, or the row's name where two rows would shorten alike (e.g. the two
    LaBraM rows)."""
    short = {r.label: short_label(r.label, width) for r in results}
    seen: dict[str, int] = {}
    for v in short.values():
        seen[v] = seen.get(v, 0) + 1
    return {r.label: (short[r.label] if seen[short[r.label]] == 1 else short_label(r.name, width)) for r in results}


def text_table(results: list[RowResult], metrics: list[str], label_width: int = 24) -> str:
    """:func:`table_lines` as fixed-width text: model, line, one column per metric (``mean [95% CI]``; the
    status column and the std left out)."""
    names = unique_short_labels(results, label_width)
    lines = [[c[0], c[1]] + [_terminal(x) for x in c[3:]] for c in table_lines(results, metrics)]
    widths = [max(len(m), *(len(c[2 + i]) for c in lines)) for i, m in enumerate(metrics)]

    def row(model: str, line: str, cells: Sequence[str]) -> str:
        return (f"{names.get(model) or short_label(model, label_width):<{label_width}} {line:<17} "
                + "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths))).rstrip()
    out = [row("model", "", metrics), "-" * len(row("", "", ["-" * w for w in widths]))]
    out += [row(c[0], c[1], c[2:]) for c in lines]
    return "\n".join(out)


def gain_verdicts(results: list[RowResult], primary: str = "song_id") -> list[str]:
    """One line per row with a control: whether it beats its no-music control on the PRIMARY metric (its gain
    interval above 0: paired over recordings with one seed, over seeds / folds with more; ``RowResult.verdict``),
    then the secondary metrics' gains with Holm-adjusted one-sided p-values, and each arm's checkpoint step."""
    out = []
    for r in results:
        c = r.cells.get(primary)
        if c is None or c.gain is None:
            continue
        head = f"{primary} {_f(c.gain, True)}{_ci95(c.gain_ci95)}" + (f", {c.gain_ci95_kind}" if c.gain_ci95_kind
                                                                       else "")
        beats = (r.verdict or {}).get("beats")
        if r.verdict is None:  # no per-item files: the means-based interval, said so
            beats = c.gain_ci95[0] > 0 if c.gain_ci95 else None
            head += "; no per-item files"
        word = ("beats its no-music control" if beats else "does NOT beat its no-music control" if beats is False
                else "has no interval for its gain over the no-music control")
        sec = [f"{m} {_f(r.cells[m].gain, True)}{_ci95(r.cells[m].gain_ci95)} p_holm={v['p_holm']:.3f}"
               + (" (beats)" if v["beats"] else "")
               for m, v in ((r.verdict or {}).get("secondary") or {}).items()]
        line = f"  {r.label}: {word} on {primary} (primary: {head})"
        if sec:
            line += f"; secondary, Holm-corrected: {'; '.join(sec)}"
        if r.steps:
            line += f"; scored at step {steps_text(r.steps)}"
        out.append(line)
    return out


def summary(out: Path, spec: dict, results: list[RowResult], index: Path | None = None) -> str:
    """The text printed at the end of ``chanmusic compare`` (and ``make demo``)."""
    main, abl = sections(spec, results)
    metrics = console_metrics(spec, results)
    k = len(spec["seeds"]) * (int(spec["folds"]["k"]) if spec.get("folds") else 1)
    parts = [f"Results ({'pooled over folds × seeds' if spec.get('folds') else 'seeds'}: {k}; mean [95% CI]; "
             f"† = one seed: the interval is the run's own, over its test recordings, not over seeds):", "",
             text_table(main, metrics)]
    if abl:
        parts += ["", "Ablations:", "", text_table(abl, metrics)]
    primary = spec.get("primary_metric") or "song_id"
    verdicts = gain_verdicts(results, primary)
    if verdicts:
        parts += ["", f"Verdict on the primary metric {primary} (only a gain is evidence that the model reads the "
                      f"music; the other metrics are secondary, Holm-corrected):"]
        parts += verdicts
    if spec.get("folds"):
        from chanmusic.report.folds import fold_text

        parts += ["", "Per fold (each fold's own test set):"] + fold_text(out, spec, metrics, primary)
    flags = detect_random_models(out, spec)
    wanted = ("RANDOMLY INITIALISED", "synthetic", "the same for every row", " ran: ")
    said = [f"Note: {n.replace('**', '')}" for n in notes(spec, results, flags)
            if any(w in n for w in wanted) and not n.startswith("Profile")]
    parts += [""] + said if said else []
    parts += ["", f"Table: {out / 'results.md'} (every metric; results.csv has every number)"]
    if index is not None:
        parts.append(f"Listening report: {Path(index).resolve().as_uri()}")
    return "\n".join(parts)

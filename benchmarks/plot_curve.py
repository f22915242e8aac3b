#!/usr/bin/env python
"""Plot and tabulate learning curves written by ``benchmarks/learning_curve.py``.

    python benchmarks/plot_curve.py OUT.png CURVE.jsonl [CURVE.jsonl ...] [--metric song_id] [--rows a,b]
        [--split test] [--add-cpu ROW=SECONDS,...] [--label-dirs] [--grid] [--target ROW,REFERENCE,FROM_STEP]

For each row (``--label-dirs``: each curve file's folder pair, e.g. ``tracking-9/linear_reference``): the gain
over the no-music control (music − control at the same step) of ``--metric`` on the ``--split`` windows, against
optimiser steps (left) and CPU-minutes (right). Where the run kept its per-window files (``items`` in the line),
the gain's interval is the **paired bootstrap over recordings** (``chanmusic.report.stats.item_gain`` on
``chanmusic.results.items_file.paired_items``: windows of one recording err together); older lines without them get
±1 binomial standard error of the difference (an optimistic approximation). Prints the same as a markdown table.

``--grid`` (with ``--label-dirs`` over ``OUT/<generator><snr>/<row>/curve.jsonl``, the ``--preset issue28`` layout):
also one line per (SNR, row), one column per generator and step. ``--target ROW,REFERENCE,FROM_STEP``: for each
generator and SNR, whether ROW's gain is at or above REFERENCE's at every shared step from FROM_STEP on (issue 28
item 4: ``channel_oriented,linear_reference,800``), with both gains and intervals.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def paired(music_items: Path, control_items: Path, metric: str) -> dict | None:
    """``{"gain", "ci95"}`` of the paired recording-level bootstrap from two per-window files (None where a file or
    the metric's column is absent)."""
    if not (music_items.is_file() and control_items.is_file()):
        return None
    from chanmusic.report.stats import item_gain
    from chanmusic.results.items_file import paired_items, read_items

    music, control = read_items(music_items), read_items(control_items)
    if f"{metric}_hit" not in music.columns or f"{metric}_hit" not in control.columns:
        return None  # a metric the test step does not yet write per window
    m, c, rec = paired_items(music, control, metric)
    return item_gain([(None, m, c, rec)])


def gains(paths: list[str], metric: str, rows: list[str] | None = None,
          add_cpu: dict[str, float] | None = None, split: str = "test",
          label_dirs: bool = False) -> dict[str, list[dict]]:
    """``{row: [{"step", "cpu_min", "music", "control", "gain", "lo", "hi", "kind", "n"}, ...]}`` sorted by step
    (``lo``/``hi``: the 95 % paired recording interval, or gain ∓ 1 binomial se); ``add_cpu``: CPU-seconds per row
    spent outside the driver (a pretraining run shared by music and control)."""
    recs: dict[tuple[str, int, bool], dict] = {}
    for p in paths:
        base = Path(p).parent
        label = "/".join(base.parts[-2:]) if label_dirs else None
        for line in Path(p).read_text().splitlines():
            r = json.loads(line)
            if metric in r and r.get("split", "test") == split:
                r = dict(r, row=label or r["row"], _base=base)
                recs[(r["row"], r["step"], r["control"])] = r  # a later line for the same point wins
    out: dict[str, list[dict]] = defaultdict(list)
    for (row, step, control), r in sorted(recs.items()):
        if control or (rows and row not in rows) or (row, step, True) not in recs:
            continue
        c = recs[(row, step, True)]
        pm, pc, n = r[metric], c[metric], r["n"]
        cpu = [x["cpu_s"] for x in (r, c) if x.get("cpu_s") is not None]
        extra = (add_cpu or {}).get(row, 0.0)
        q = {"step": step, "cpu_min": (max(cpu) + extra) / 60 if cpu else None, "music": pm, "control": pc,
             "gain": pm - pc, "n": n}
        iv = paired(r["_base"] / r["items"], c["_base"] / c["items"], metric) if "items" in r and "items" in c \
            else None
        if iv is not None and iv.get("ci95"):
            q.update(gain=iv["gain"], lo=iv["ci95"][0], hi=iv["ci95"][1], kind="paired recordings 95 %")
        else:
            se = math.sqrt(pm * (1 - pm) / n + pc * (1 - pc) / n)
            q.update(lo=pm - pc - se, hi=pm - pc + se, kind="±1 binomial se")
        out[row].append(q)
    return dict(out)


def table(curves: dict[str, list[dict]], metric: str) -> str:
    lines = [f"| row | step | CPU-min | {metric} music | control | gain [interval] |", "|---|---|---|---|---|---|"]
    for row, pts in curves.items():
        for q in pts:
            cpu = "—" if q["cpu_min"] is None else f"{q['cpu_min']:.1f}"
            lines.append(f"| {row} | {q['step']} | {cpu} | {q['music']:.3f} | {q['control']:.3f} | "
                         f"{q['gain']:+.3f} [{q['lo']:+.3f}, {q['hi']:+.3f}] |")
    kinds = sorted({q["kind"] for pts in curves.values() for q in pts})
    return "\n".join(lines + ([f"\nIntervals: {', '.join(kinds)}."] if kinds else []))


def _split_label(label: str) -> tuple[str, str, str]:
    """``"dipole-9/linear_reference"`` → ``("dipole", "-9", "linear_reference")``."""
    where, row = label.split("/", 1)
    m = re.fullmatch(r"(.+?)([+-]\d+(?:\.\d+)?)", where)
    return (m.group(1), m.group(2), row) if m else (where, "", row)


def grid(curves: dict[str, list[dict]], metric: str) -> str:
    """Markdown: one line per (SNR, row), a column per (generator, step), cells ``gain [lo, hi]``."""
    cells: dict[tuple[str, str], dict[tuple[str, int], dict]] = defaultdict(dict)
    for label, pts in curves.items():
        gen, snr, row = _split_label(label)
        for q in pts:
            cells[(snr, row)][(gen, q["step"])] = q
    cols = sorted({c for v in cells.values() for c in v}, key=lambda c: (c[0], c[1]))
    lines = [f"| SNR dB | row | " + " | ".join(f"{g} {s}" for g, s in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for (snr, row), v in sorted(cells.items(), key=lambda kv: (-float(kv[0][0] or 0), kv[0][1])):
        lines.append(f"| {snr} | {row} | " + " | ".join(
            f"{v[c]['gain']:+.3f} [{v[c]['lo']:+.3f}, {v[c]['hi']:+.3f}]" if c in v else "—" for c in cols) + " |")
    return f"{metric} gain over the no-music control:\n" + "\n".join(lines)


def target(curves: dict[str, list[dict]], row: str, reference: str, from_step: int) -> tuple[str, bool]:
    """Lines ``<gen><snr>: step S: ROW +g [..] vs REFERENCE +g [..]: at or above | BELOW`` and whether every shared
    step from ``from_step`` on, on every generator and SNR where both ran, is at or above."""
    by: dict[tuple[str, str], dict[str, dict[int, dict]]] = defaultdict(dict)
    for label, pts in curves.items():
        gen, snr, r = _split_label(label)
        by[(gen, snr)][r] = {q["step"]: q for q in pts}
    lines, ok = [], True
    for (gen, snr), rows in sorted(by.items()):
        if row not in rows or reference not in rows:
            continue
        for step in sorted(set(rows[row]) & set(rows[reference])):
            if step < from_step:
                continue
            a, b = rows[row][step], rows[reference][step]
            met = a["gain"] >= b["gain"]
            ok &= met
            lines.append(f"{gen}{snr}: step {step}: {row} {a['gain']:+.3f} [{a['lo']:+.3f}, {a['hi']:+.3f}] vs "
                         f"{reference} {b['gain']:+.3f} [{b['lo']:+.3f}, {b['hi']:+.3f}]: "
                         f"{'at or above' if met else 'BELOW'}")
    return "\n".join(lines), ok and bool(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("png")
    p.add_argument("curves", nargs="+")
    p.add_argument("--metric", default="song_id")
    p.add_argument("--rows", default=None)
    p.add_argument("--split", default="test", choices=("test", "val"))
    p.add_argument("--label-dirs", action="store_true", help="name each curve by its folder (GEN/ROW)")
    p.add_argument("--add-cpu", default="", help="ROW=SECONDS,...: CPU time spent outside the driver (pretraining)")
    p.add_argument("--grid", action="store_true", help="also a generator x SNR table (needs --label-dirs)")
    p.add_argument("--target", default=None, help="ROW,REFERENCE,FROM_STEP: is ROW's gain >= REFERENCE's")
    a = p.parse_args(argv)
    add = {k: float(v) for k, v in (x.split("=") for x in a.add_cpu.split(",") if x)}
    curves = gains(a.curves, a.metric, a.rows.split(",") if a.rows else None, add, a.split, a.label_dirs)
    print(table(curves, a.metric))
    if a.grid or a.target:
        if not a.label_dirs:
            p.error("--grid / --target read the generator and SNR from the folders: add --label-dirs")
    if a.grid:
        print("\n" + grid(curves, a.metric))
    if a.target:
        row, reference, step = a.target.split(",")
        text, ok = target(curves, row, reference, int(step))
        print(f"\ntarget: {row} at or above {reference} from step {step} on: {'MET' if ok else 'NOT met'}\n{text}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for row, pts in curves.items():
        for ax, key in zip(axes, ("step", "cpu_min")):
            qs = [q for q in pts if q[key] is not None]
            if not qs:
                continue
            err = [[q["gain"] - q["lo"] for q in qs], [q["hi"] - q["gain"] for q in qs]]
            ax.errorbar([q[key] for q in qs], [q["gain"] for q in qs], yerr=err, marker="o", capsize=2, label=row)
    for ax, label in zip(axes, ("optimiser steps (alignment)", "CPU-minutes (pretraining + alignment)")):
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xlabel(label)
    axes[0].set_ylabel(f"{a.metric} ({a.split}): music − no-music control")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(a.png, dpi=110)
    print(f"wrote {a.png}")


if __name__ == "__main__":
    main()

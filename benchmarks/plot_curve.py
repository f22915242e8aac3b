#!/usr/bin/env python
"""Plot and tabulate learning curves written by ``benchmarks/learning_curve.py``.

    python benchmarks/plot_curve.py OUT.png CURVE.jsonl [CURVE.jsonl ...] [--metric song_id] [--rows a,b]
        [--split test] [--add-cpu ROW=SECONDS,...] [--label-dirs]

For each row (``--label-dirs``: each curve file's folder pair, e.g. ``tracking-9/linear_reference``): the gain
over the no-music control (music − control at the same step) of ``--metric`` on the ``--split`` windows, against
optimiser steps (left) and CPU-minutes (right). Where the run kept its per-window files (``items`` in the line),
the gain's interval is the **paired bootstrap over recordings** (``chanmusic.report.stats.item_gain`` on
``chanmusic.results.items_file.paired_items``: windows of one recording err together); older lines without them get
±1 binomial standard error of the difference (an optimistic approximation). Prints the same as a markdown table.
"""
from __future__ import annotations

import argparse
import json
import math
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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("png")
    p.add_argument("curves", nargs="+")
    p.add_argument("--metric", default="song_id")
    p.add_argument("--rows", default=None)
    p.add_argument("--split", default="test", choices=("test", "val"))
    p.add_argument("--label-dirs", action="store_true", help="name each curve by its folder (GEN/ROW)")
    p.add_argument("--add-cpu", default="", help="ROW=SECONDS,...: CPU time spent outside the driver (pretraining)")
    a = p.parse_args(argv)
    add = {k: float(v) for k, v in (x.split("=") for x in a.add_cpu.split(",") if x)}
    curves = gains(a.curves, a.metric, a.rows.split(",") if a.rows else None, add, a.split, a.label_dirs)
    print(table(curves, a.metric))
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

#!/usr/bin/env python
"""Plot and tabulate learning curves written by ``benchmarks/learning_curve.py``.

    python benchmarks/plot_curve.py OUT.png CURVE.jsonl [CURVE.jsonl ...] [--metric song_id] [--rows a,b]

For each row: the gain over the no-music control (music − control at the same step) of ``--metric`` against
optimiser steps (left) and against CPU-minutes (right), with ±1 binomial standard error of the difference
(``sqrt(p_m(1-p_m)/n + p_c(1-p_c)/n)``, n test windows; an approximation: windows of one recording are not
independent). Prints the same as a markdown table.
"""
from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path


def gains(paths: list[str], metric: str, rows: list[str] | None = None,
          add_cpu: dict[str, float] | None = None) -> dict[str, list[dict]]:
    """``{row: [{"step", "cpu_min", "music", "control", "gain", "se", "n"}, ...]}`` sorted by step; ``add_cpu``:
    CPU-seconds per row spent outside the driver (a pretraining run shared by music and control)."""
    recs: dict[tuple[str, int, bool], dict] = {}
    for p in paths:
        for line in Path(p).read_text().splitlines():
            r = json.loads(line)
            if metric in r:
                recs[(r["row"], r["step"], r["control"])] = r  # a later line for the same point wins
    out: dict[str, list[dict]] = defaultdict(list)
    for (row, step, control), r in sorted(recs.items()):
        if control or (rows and row not in rows) or (row, step, True) not in recs:
            continue
        c = recs[(row, step, True)]
        pm, pc, n = r[metric], c[metric], r["n"]
        cpu = [x["cpu_s"] for x in (r, c) if x.get("cpu_s") is not None]
        extra = (add_cpu or {}).get(row, 0.0)
        out[row].append({"step": step, "cpu_min": (max(cpu) + extra) / 60 if cpu else None, "music": pm, "control": pc,
                         "gain": pm - pc, "se": math.sqrt(pm * (1 - pm) / n + pc * (1 - pc) / n), "n": n})
    return dict(out)


def table(curves: dict[str, list[dict]], metric: str) -> str:
    lines = [f"| row | step | CPU-min | {metric} music | control | gain ± se |", "|---|---|---|---|---|---|"]
    for row, pts in curves.items():
        for q in pts:
            cpu = "—" if q["cpu_min"] is None else f"{q['cpu_min']:.1f}"
            lines.append(f"| {row} | {q['step']} | {cpu} | {q['music']:.3f} | {q['control']:.3f} | "
                         f"{q['gain']:+.3f} ± {q['se']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("png")
    p.add_argument("curves", nargs="+")
    p.add_argument("--metric", default="song_id")
    p.add_argument("--rows", default=None)
    p.add_argument("--add-cpu", default="", help="ROW=SECONDS,...: CPU time spent outside the driver (pretraining)")
    a = p.parse_args(argv)
    add = {k: float(v) for k, v in (x.split("=") for x in a.add_cpu.split(",") if x)}
    curves = gains(a.curves, a.metric, a.rows.split(",") if a.rows else None, add)
    print(table(curves, a.metric))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for row, pts in curves.items():
        for ax, key in zip(axes, ("step", "cpu_min")):
            xs = [q[key] for q in pts if q[key] is not None]
            qs = [q for q in pts if q[key] is not None]
            if not xs:
                continue
            ax.errorbar(xs, [q["gain"] for q in qs], yerr=[q["se"] for q in qs], marker="o", capsize=2, label=row)
    for ax, label in zip(axes, ("optimiser steps (alignment)", "CPU-minutes (pretraining + alignment)")):
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xlabel(label)
    axes[0].set_ylabel(f"{a.metric}: music − no-music control")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.png, dpi=110)
    print(f"wrote {a.png}")


if __name__ == "__main__":
    main()

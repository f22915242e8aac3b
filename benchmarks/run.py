#!/usr/bin/env python
"""chanmusic benchmarks (``make bench``): preparation speed, data loading vs. training, memory vs. data size.

    python benchmarks/run.py [--only NAME ...] [--work DIR] [--keep] [--out benchmarks/results.json]

Writes two demo sets (``datamodules.synthetic.write_demo``; the 4× set has 4× the subjects on the same songs),
prepares them, runs every benchmark in ``BENCHMARKS``, prints a table and writes ``benchmarks/results.json``
(git-ignored). About 8–9 minutes on 2 CPU cores (``demo_run``, the whole ``make demo``, about 5;
``encoder_speed`` about a minute; ``--only demo_run`` runs the demo alone). See
``benchmarks/README.md`` for what each number means.

Adding a benchmark: write ``fn(ctx: Context) -> list[Row]`` in its own ``benchmarks/bench_<name>.py`` and append
it to ``BENCHMARKS``. ``ctx`` has the demo sets (``ctx.sets["1x"]``, ``ctx.sets["4x"]``), ``ctx.align_model(...)``
(an alignment model + one real batch from an encoder YAML, built through the CLI) and ``ctx.facts`` (numbers
earlier benchmarks left for later ones). A benchmark that cannot run (an encoder not written yet, a missing
optional package) returns a row with ``value=None`` and a note; an exception is caught and reported the same
way, so one benchmark never stops the others.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_cache_integrity import cache_integrity  # noqa: E402
from benchmarks.bench_demo import demo_run  # noqa: E402
from benchmarks.bench_encoder_speed import encoder_speed  # noqa: E402
from benchmarks.bench_loader import loader_throughput  # noqa: E402
from benchmarks.bench_memory import memory_vs_data_size  # noqa: E402
from benchmarks.bench_prepare import make_sets  # noqa: E402
from benchmarks.bench_train_step import train_step_consumption  # noqa: E402
from benchmarks.common import DURATION_S, SONGS, SUBJECTS, Benchmark, Context, Row  # noqa: E402
from benchmarks.results import print_table, results_json, write_results  # noqa: E402

#: run in this order after ``make_sets``; later ones may read ``ctx.facts`` of earlier ones. ``demo_run`` first:
#: its peak RSS is the largest of this process's finished children.
BENCHMARKS: list[Benchmark] = [demo_run, loader_throughput, train_step_consumption, encoder_speed,
                               memory_vs_data_size, cache_integrity]


def _safe(fn: Benchmark, ctx: Context) -> tuple[list[Row], float]:
    t0 = time.perf_counter()
    try:
        rows = fn(ctx)
    except Exception as e:  # one broken benchmark must not hide the others
        rows = [Row(fn.__name__, "failed", None, "", f"{type(e).__name__}: {e}"[:300])]
        print(f"[bench] {fn.__name__} failed: {type(e).__name__}: {e}", file=sys.stderr)
    return rows, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, make the demo sets, run the chosen benchmarks, print the table, write the JSON."""
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="*", help="run only these benchmarks (function names)")
    p.add_argument("--work", help="working folder (default: a temporary folder, removed afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the working folder")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"))
    a = p.parse_args(argv)

    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="chanmusic-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(work)
    chosen = [f for f in BENCHMARKS if not a.only or f.__name__ in a.only]
    t_start = time.perf_counter()
    load_start = list(os.getloadavg())
    print(f"[bench] load average {load_start[0]:.1f} on {os.cpu_count()} cores (other work on the machine slows "
          f"every number below)", flush=True)
    print(f"[bench] demo sets in {work} ({len(SONGS)} songs × {DURATION_S:.0f} s; subjects {SUBJECTS})", flush=True)
    rows, took = _safe(make_sets, ctx)
    timings = {"make_sets": took}
    if ctx.sets.keys() >= SUBJECTS.keys():
        for fn in chosen:
            print(f"[bench] {fn.__name__} …", flush=True)
            r, took = _safe(fn, ctx)
            rows += r
            timings[fn.__name__] = took
    print()
    print_table(rows)
    out = results_json(rows, timings, load_start, t_start)
    write_results(a.out, out)
    print(f"\n[bench] wrote {a.out} in {out['seconds']['total']:.0f} s")
    if not a.work and not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

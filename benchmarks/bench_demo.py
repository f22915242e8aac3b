"""Benchmark ``demo``: ``make demo`` itself (``chanmusic compare --profile demo``, demo data written from scratch)
— wall time, CPU time of every process it started, peak RSS of its largest process and of all its processes
together, and how many rows beat their no-music control. A figure to watch for regressions, not a timed test:
the target is 5 minutes on 2 idle cores (issue 22); on a shared machine read it with the load average beside it.

It runs in a fresh output folder under the benchmark's work folder, as a child process. The largest process's
peak is the kernel's ``ru_maxrss`` over the finished descendants (run this benchmark first: ``run.py`` does);
the together-peak samples the ``VmRSS`` of the whole process tree every 0.2 s.
"""
from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.common import ROOT, Context, Row

TARGET_S = 300.0


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc; processes that vanish meanwhile are skipped)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def demo_run(ctx: Context) -> list[Row]:
    """``chanmusic compare --profile demo`` in ``WORK/demo_out``: wall, CPU, peak RSS, rows beating control."""
    out = ctx.work / "demo_out"
    log = ctx.work / "demo.log"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]]
                                                                    if os.environ.get("PYTHONPATH") else [])))
    with log.open("w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "chanmusic.cli", "compare", "--profile", "demo", "--out",
                                 str(out)], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        peak_total = [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak_total[0] = max(peak_total[0], sum(_rss_kb(p) for p in [proc.pid] + _children(proc.pid)))
                time.sleep(0.2)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        rc = proc.wait()
        stop.set()
        th.join()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    text = log.read_text(errors="replace")
    beats, not_beat = len(re.findall(r": beats its no-music control", text)), len(re.findall(r"does NOT beat", text))
    note = f"load average {load:.1f} at start on {os.cpu_count()} cores; log {log}"
    if rc != 0:
        return [Row("demo", "make demo", None, "", f"exit code {rc}; {note}")]
    return [Row("demo", "wall time", wall, "s", note, target_met=wall <= TARGET_S),
            Row("demo", "CPU time (all processes)", cpu, "s", "user + system of every process the demo started"),
            Row("demo", "peak RSS, largest process", after.ru_maxrss / 1024, "MB", "ru_maxrss of the descendants"),
            Row("demo", "peak RSS, all processes together", peak_total[0] / 1024, "MB", "sampled every 0.2 s"),
            Row("demo", "rows beating their control", float(beats), "rows",
                f"{not_beat} row(s) do not (the demo says so in its output)")]

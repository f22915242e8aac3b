"""The benchmarks' output: the printed table and ``benchmarks/results.json`` (rows, machine, settings, seconds)."""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.common import BATCH_SIZE, DURATION_S, RATIO_TARGET, SONGS, SUBJECTS, Row


def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def print_table(rows: list[Row]) -> None:
    """Print ``rows`` as an aligned text table (value column right-aligned)."""
    cols = [("benchmark", [r.benchmark for r in rows]), ("metric", [r.metric for r in rows]),
            ("value", [_fmt(r.value) for r in rows]), ("unit", [r.unit for r in rows]),
            ("target", [{True: "met", False: "NOT met", None: ""}[r.target_met] for r in rows]),
            ("note", [r.note for r in rows])]
    widths = [max(len(h), *(len(x) for x in xs)) for h, xs in cols]
    line = lambda xs: "  ".join(str(x).ljust(w) if i != 2 else str(x).rjust(w) for i, (x, w) in enumerate(zip(xs, widths)))  # noqa: E731
    print(line([h for h, _ in cols]))
    print(line(["-" * w for w in widths]))
    for i in range(len(rows)):
        print(line([xs[i] for _, xs in cols]))


def results_json(rows: list[Row], timings: dict[str, float], load_start: list[float],
                 t_start: float) -> dict[str, Any]:
    """The content of ``results.json``: machine (with the load average at start and now), settings, rows and the
    seconds each benchmark took (``timings`` plus ``total``, since ``t_start`` from ``time.perf_counter()``)."""
    import torch

    return {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average_at_start": load_start, "load_average_at_end": list(os.getloadavg())},
        "config": {"songs": SONGS, "duration_s": DURATION_S, "subjects": SUBJECTS, "batch_size": BATCH_SIZE,
                   "ratio_target": RATIO_TARGET},
        "rows": [asdict(r) for r in rows],
        "seconds": {**timings, "total": time.perf_counter() - t_start},
    }


def write_results(path: str | Path, out: dict[str, Any]) -> None:
    """Write ``out`` as indented JSON to ``path`` (creating its folder)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1))

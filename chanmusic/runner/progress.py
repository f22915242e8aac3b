"""One progress line per finished run: what it was, how it went, the time so far and an estimate of what remains.

The estimate for a run not yet finished is the mean wall time of the finished runs of the same row (music and
control of a row cost about the same), else the mean time per step of all finished runs times its steps (a run
that pretrains, aligns and reconstructs costs more than one that only aligns); a running run counts only its
part still to go (at least a tenth of its estimate). The sum is divided by the runs that can go at once
(``jobs``). Runs skipped as done earlier count as nothing. It is an estimate from the runs so far: early on,
when only the cheap runs have finished, it is low.
"""
from __future__ import annotations

import threading
import time

from chanmusic.runner.plan import RunPlan

SHOWN = ("id50", "song_id", "within_song", "clap_score")


def fmt_duration(s: float) -> str:
    """``42 s``, ``3.5 min`` or ``1.2 h``."""
    return f"{s:.0f} s" if s < 90 else (f"{s / 60:.1f} min" if s < 5400 else f"{s / 3600:.1f} h")


class Progress:
    """Tracks the runs' start and end times (thread-safe) and writes the progress lines."""

    def __init__(self, plans: list[RunPlan], jobs: int = 1, prefix: str = "[compare]",
                 steps: dict[int, int] | None = None):
        self.plans, self.jobs, self.prefix = list(plans), max(1, jobs), prefix
        self.steps = steps or {}             # id(plan) -> its number of steps (default 1)
        self.t0 = time.time()
        self.started: dict[int, float] = {}
        self.took: dict[int, float] = {}     # wall seconds of runs that ran (not skipped)
        self.finished: set[int] = set()
        self._lock = threading.Lock()

    def start(self, plan: RunPlan) -> None:
        with self._lock:
            self.started[id(plan)] = time.time()

    def finish(self, plan: RunPlan, st: dict) -> str:
        """Record ``plan`` as finished with status ``st``; returns its progress line."""
        with self._lock:
            now = time.time()
            dt = now - self.started.get(id(plan), now)
            self.finished.add(id(plan))
            if not st.get("skipped"):
                self.took[id(plan)] = dt
            left = self.remaining(now)
            n_done = len(self.finished)
        m = st.get("metrics") or {}
        what = " ".join(f"{k} {m[k]['mean']:.3f}" for k in SHOWN if isinstance(m.get(k), dict) and "mean" in m[k])
        if st.get("skipped"):
            state = "done earlier, skipped" + (f" ({st['note']})" if st.get("note") else "")
        elif st["status"] == "done":
            state = f"done in {fmt_duration(dt)} (cpu {fmt_duration(st.get('cpu_s') or 0)})"
        else:
            state = f"FAILED ({st.get('failed_step')}) in {fmt_duration(dt)}: {st.get('error')}"
        eta = "" if n_done == len(self.plans) else (f", ~{fmt_duration(left)} left" if left is not None else "")
        return (f"{self.prefix} ({n_done}/{len(self.plans)}) {plan.label}: {state}{' — ' + what if what else ''}"
                f"  [{fmt_duration(now - self.t0)} so far{eta}]")

    def estimate(self, plan: RunPlan) -> float | None:
        """Expected wall seconds of ``plan``: its row's mean, else every finished run's mean (None: no data)."""
        same = [self.took[id(p)] for p in self.plans if id(p) in self.took and p.row.name == plan.row.name]
        if same:
            return sum(same) / len(same)
        if not self.took:
            return None
        per_step = sum(self.took.values()) / sum(self.steps.get(k, 1) for k in self.took)
        return per_step * self.steps.get(id(plan), 1)

    def remaining(self, now: float) -> float | None:
        """Estimated wall seconds until every run has finished (None before any run has taken time)."""
        total = 0.0
        for p in self.plans:
            if id(p) in self.finished:
                continue
            est = self.estimate(p)
            if est is None:
                return None
            if id(p) in self.started:
                est = max(est - (now - self.started[id(p)]), 0.1 * est)
            total += est
        return total / self.jobs

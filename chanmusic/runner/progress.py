"""Progress lines of ``chanmusic compare``: one per finished run (what it was, how it went, the time so far and an
estimate of what remains) and, from the first finished step on (a shared pretraining, a run's align step), one per
finished step with the same estimate, so an estimate comes long before the first run ends.

**Work units** (the estimate from the start). Each step weighs its epochs (``trainer.max_epochs`` of its YAML list
and arguments) + 1 for its test; a reconstruction step, which trains nothing, weighs 1 (:func:`step_units`). A
run's units are those of its steps, its shared pretraining counted once, for the first run that needs it. The time
per unit is measured on the steps finished so far (pretraining included); what remains is the units not yet done
times that rate, divided by the runs that can go at once (``jobs``). Runs skipped as done earlier, and the steps a
failed run will not run, count as nothing. It assumes an epoch costs about the same in every step.

Without units (``Progress(..., units=None)``) the estimate for a run not yet finished is the mean wall time of the
finished runs of the same row, else the mean time per step of all finished runs times its steps; a running run
counts only its part still to go (at least a tenth of its estimate).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import yaml

from chanmusic.runner.plan import RunPlan, Step

SHOWN = ("id50", "song_id", "within_song", "clap_score")


def fmt_duration(s: float) -> str:
    """``42 s``, ``3.5 min`` or ``1.2 h``."""
    return f"{s:.0f} s" if s < 90 else (f"{s / 60:.1f} min" if s < 5400 else f"{s / 3600:.1f} h")


def step_units(step: Step) -> float:
    """The work units of one step: ``max_epochs + 1`` for a step that trains (its YAMLs, its ``set`` and its
    arguments, last one winning, as the CLI reads them; 1 epoch if none says), 1 for a reconstruction step."""
    if step.name == "reconstruct":
        return 1.0
    epochs: Any = None
    for path in step.configs:
        try:
            cfg = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        epochs = ((cfg.get("trainer") or {}) if isinstance(cfg, dict) else {}).get("max_epochs", epochs)
    epochs = (step.set.get("trainer") or {}).get("max_epochs", epochs)
    for i, a in enumerate(step.args):
        if a == "--trainer.max_epochs" and i + 1 < len(step.args):
            epochs = step.args[i + 1]
        elif a.startswith("--trainer.max_epochs="):
            epochs = a.split("=", 1)[1]
    try:
        return float(max(1, int(epochs))) + 1.0
    except (TypeError, ValueError):
        return 2.0


class Progress:
    """Tracks the runs' start and end times (thread-safe) and writes the progress lines."""

    def __init__(self, plans: list[RunPlan], jobs: int = 1, prefix: str = "[compare]",
                 steps: dict[int, int] | None = None, units: dict[int, float] | None = None):
        self.plans, self.jobs, self.prefix = list(plans), max(1, jobs), prefix
        self.steps = steps or {}             # id(plan) -> its number of steps (default 1)
        self.units = units                   # id(plan) -> its work units (pretraining included), or None
        self.units_done = 0.0                # units of the steps finished so far ...
        self.seconds_done = 0.0              # ... and the wall seconds they took
        self.plan_done: dict[int, float] = {}  # id(plan) -> units of its steps finished (its pretraining included)
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
            if self.units is not None:  # what it did not run (skipped, failed) will not run
                self.plan_done[id(plan)] = self.units.get(id(plan), 0.0)
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

    def step_done(self, plan: RunPlan | None, name: str, units: float, seconds: float) -> str | None:
        """Record a finished step of ``plan`` (``units`` of work in ``seconds``; ``plan`` None: not attributed to a
        run, e.g. a pretraining shared with a run counted already); returns its progress line (None without units)."""
        with self._lock:
            self.units_done += float(units)
            self.seconds_done += float(seconds)
            if plan is not None and self.units is not None:
                self.plan_done[id(plan)] = self.plan_done.get(id(plan), 0.0) + float(units)
            now = time.time()
            left = self.remaining(now)
        if self.units is None:
            return None
        who = f"{plan.label}: " if plan is not None else ""
        eta = f", ~{fmt_duration(left)} left" if left is not None else ""
        return f"{self.prefix}   {who}{name} done in {fmt_duration(seconds)}  [{fmt_duration(now - self.t0)} so far{eta}]"

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
        """Estimated wall seconds until every run has finished (None before any step, or run, has taken time)."""
        if self.units is not None:
            if self.units_done <= 0 or self.seconds_done <= 0:
                return None
            todo = sum(max(0.0, u - self.plan_done.get(k, 0.0)) for k, u in self.units.items())
            return todo * (self.seconds_done / self.units_done) / self.jobs
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

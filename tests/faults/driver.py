"""A small ``compare`` (fake worker, fake spec) that can be SIGKILLed at a chosen point (``tests/faults``).

    python driver.py SPEC OUT [--kill-at N | --kill-worker-at N | --kill-in-report]

``--kill-at N``: the N-th worker call kills this runner and then itself (``FAULT_KILL_AT`` / ``FAULT_COUNTER``,
read by ``killer_worker.py``); ``--kill-worker-at N``: the N-th worker call SIGKILLs itself alone and the
runner goes on (``FAULT_KILL_WORKER_AT``); ``--kill-in-report``: the runner kills itself after ``results.md`` is written and
before ``results.csv``. Otherwise it runs every run, then writes ``results.md`` / ``results.csv``.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("spec")
    p.add_argument("out")
    p.add_argument("--kill-at", type=int, default=None)
    p.add_argument("--kill-worker-at", type=int, default=None)
    p.add_argument("--kill-in-report", action="store_true")
    a = p.parse_args()
    sys.path[:0] = [str(HERE.parents[1]), str(HERE.parent)]
    from chanmusic.report import results as results_mod
    from chanmusic.runner.lock import acquire_lock
    from chanmusic.runner.plan import plan_runs
    from chanmusic.runner.spec import load_spec
    from chanmusic.runner.status import save_spec
    from chanmusic.runner.sweep import Runner

    out = Path(a.out)
    os.environ["FAULT_RUNNER_PID"] = str(os.getpid())
    os.environ["FAULT_KILL_AT"] = str(a.kill_at or 0)
    os.environ["FAULT_KILL_WORKER_AT"] = str(a.kill_worker_at or 0)
    os.environ["FAULT_COUNTER"] = str(out.parent / f"{out.name}.calls")
    spec = load_spec(a.spec, "quick", None, None, out, [], {}, None)
    out.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(out)
    try:
        runner = Runner(spec, out, worker_cmd=[sys.executable, str(HERE / "killer_worker.py")], printer=lambda s: None)
        runner.prepare_caches = lambda plans: None  # the fake configs have no data
        save_spec(spec, out)
        runner.run_all(plan_runs(spec, out))
    finally:
        lock.release()
    if a.kill_in_report:
        real = results_mod.write_csv
        results_mod.write_csv = lambda *x, **k: os.kill(os.getpid(), signal.SIGKILL) or real(*x, **k)
    results_mod.write_results(out)


if __name__ == "__main__":
    main()

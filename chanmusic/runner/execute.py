"""Running one step: its worker subprocess, the wait (with CPU time and timeout), and ending it cleanly.

:func:`run_step` writes the step's ``job.json`` and override YAML into the step folder, starts the worker
(``python -m chanmusic.runner.worker --worker JOB``, see :mod:`chanmusic.runner.worker`) in its own process
group with its output in ``log.txt``, and reads back the ``result.json`` it writes. A step resumes from its
``last.ckpt`` when the folder has one; if that resume fails, the folder is wiped and the step redone once.
Workers still running when the runner is interrupted are ended with their process group
(:func:`kill_live_workers`).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from chanmusic.runner.plan import Step, cli_command, display_path, missing_configs
from chanmusic.runner.spec import EXPERIMENTS
from chanmusic.runner.status import error_from_log, now, read_json


def run_step(step: Step, stepdir: Path, timeout_s: float | None, worker_cmd: list[str] | None = None,
             threads: int | None = None) -> dict:
    """Run one step in a worker subprocess; returns its result dict (``status`` done|failed, ``error``,
    ``metrics`` path, ``checkpoint``, ``seconds``, ``commands``). Resumes from ``last.ckpt`` when the folder
    has one; if that resume fails, the folder is wiped and the step redone from scratch once."""
    missing = missing_configs(step.configs)
    if missing:
        return {"status": "failed", "error": f"config not found: {display_path(missing[0])}", "seconds": 0.0}
    worker_cmd = worker_cmd or default_worker_cmd()
    result = _launch(step, stepdir, timeout_s, worker_cmd, threads)
    if result["status"] != "done" and result.get("resumed"):
        with (stepdir / "log.txt").open("a") as f:
            f.write(f"\n[compare] resume failed ({result.get('error')}); redoing the step from scratch\n")
        wipe(stepdir, keep_log=True)
        result = _launch(step, stepdir, timeout_s, worker_cmd, threads)
    return result


def default_worker_cmd() -> list[str]:
    """The worker: :mod:`chanmusic.runner.worker` in a fresh interpreter (``JOB.json`` is appended)."""
    return [sys.executable, "-m", "chanmusic.runner.worker", "--worker"]


def wipe(d: Path, keep_log: bool = False) -> None:
    """Empty the folder ``d`` (keeping its ``log.txt`` with ``keep_log``)."""
    if not d.exists():
        return
    for p in d.iterdir():
        if keep_log and p.name == "log.txt":
            continue
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def _launch(step: Step, stepdir: Path, timeout_s: float | None, worker_cmd: list[str],
            threads: int | None = None) -> dict:
    stepdir.mkdir(parents=True, exist_ok=True)
    over = stepdir / "compare_overrides.yaml"
    configs = list(step.configs) + [over]
    fit_done = read_json(stepdir / "fit_done.json")
    if fit_done and not (fit_done.get("checkpoint") and Path(fit_done["checkpoint"]).is_file()):
        (stepdir / "fit_done.json").unlink(missing_ok=True)
        fit_done = None
    last = stepdir / "checkpoints" / "last.ckpt"
    resume = None if fit_done else (str(last) if last.is_file() else None)
    if not fit_done and not resume:  # nothing to resume from: start clean (no stale metrics or events)
        wipe(stepdir, keep_log=True)
    over.write_text("# written by chanmusic compare: this run's seed, folders, control and profile settings\n"
                    + yaml.safe_dump(step.set, sort_keys=False))
    job = {"configs": [str(c) for c in configs], "args": list(step.args), "dir": str(stepdir), "commands": list(step.commands),
           "resume": resume}
    (stepdir / "job.json").write_text(json.dumps(job, indent=2))
    (stepdir / "result.json").unlink(missing_ok=True)
    t0 = time.time()
    rc: int | None = None
    cpu = 0.0
    with (stepdir / "log.txt").open("a") as log:
        log.write(f"\n[compare] {now()} step {step.name}: {'resume from ' + resume if resume else 'start'}\n")
        log.flush()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join([str(EXPERIMENTS.parent)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        if threads:  # parallel runs share the cores: one torch/OpenMP thread pool each of this size
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        proc = subprocess.Popen(list(worker_cmd) + [str(stepdir / "job.json")],
                                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        with _LIVE_LOCK:
            _LIVE.add(proc)
        try:
            rc, cpu = _wait(proc, timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            log.write(f"\n[compare] step {step.name} killed after the {timeout_s:.0f} s timeout\n")
            return {"status": "failed", "error": f"TimeoutError: step {step.name} ran past {timeout_s:.0f} s",
                    "seconds": time.time() - t0, "resumed": bool(resume)}
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(proc)
    res = read_json(stepdir / "result.json")
    if res is None:
        res = {"status": "failed", "error": error_from_log(stepdir / "log.txt", rc)}
    elif rc != 0 and res.get("status") == "done":
        res = {**res, "status": "failed", "error": error_from_log(stepdir / "log.txt", rc)}
    res["seconds"] = round(time.time() - t0, 1)
    res["cpu_s"] = round(cpu, 1)   # the worker's CPU time (its wall time depends on the machine's load)
    res["resumed"] = bool(resume)
    res.setdefault("commands", [cli_command(c, configs, step.args) for c in step.commands])
    return res


_LIVE: set[subprocess.Popen] = set()   # workers running now (killed if the runner is interrupted)
_LIVE_LOCK = threading.Lock()


def _wait(proc: subprocess.Popen, timeout_s: float | None) -> tuple[int, float]:
    """(exit code, CPU seconds) of one worker: ``wait4`` gives this child's own resource use even while other
    workers run in parallel."""
    deadline = None if timeout_s is None else time.time() + timeout_s
    while True:
        try:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by kill_live_workers meanwhile
            return (proc.returncode if proc.returncode is not None else -15), 0.0
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, ru.ru_utime + ru.ru_stime
        if deadline is not None and time.time() > deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
        time.sleep(0.2)


def kill_live_workers() -> None:
    """End every worker still running (each with its process group)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for proc in live:
        _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    """End the worker we started (its own process group, so its children go too)."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, PermissionError):
        pass
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

"""Running one step: its job handed to the engine (submitit, :mod:`chanmusic.runner.engine`), the wait, the result.

:func:`run_step` writes the step's ``job.json`` and override YAML into the step folder and submits a
:class:`~chanmusic.runner.engine.StepJob` that runs the worker (``python -m chanmusic.runner.worker --worker
JOB``, see :mod:`chanmusic.runner.worker`) with its output in ``log.txt``; submitit's own files go to
``STEP/submitit/`` and the job's id to ``STEP/engine.json``. It then reads back the ``result.json`` the worker
writes. A step resumes from its ``last.ckpt`` when the folder has one; if that resume fails, the step is redone
from scratch once, its checkpoints kept in ``STEP/superseded/<time>/`` (a folder is never emptied of checkpoints). Jobs still running when the runner is interrupted are cancelled
(:func:`kill_live_workers`). Time limits are the engine's (submitit's local limit, SLURM's ``--time``).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import yaml

from chanmusic.runner.engine import EXIT_FILE, EngineSettings, GpuPool, StepJob, job_env, make_executor, read_exit
from chanmusic.runner.plan import Step, cli_command, display_path, missing_configs
from chanmusic.runner.spec import SOURCE_ROOT
from chanmusic.results.checkpoint_rule import FIT_DONE
from chanmusic.results.metrics_file import read_json
from chanmusic.runner.status import error_from_log, first_line, now


def run_step(step: Step, stepdir: Path, timeout_s: float | None, worker_cmd: list[str] | None = None,
             threads: int | None = None, engine: EngineSettings | None = None, gpus: GpuPool | None = None) -> dict:
    """Run one step as an engine job (the worker in its own process); returns its result dict (``status`` done|failed, ``error``,
    ``metrics`` path, ``checkpoint``, ``seconds``, ``commands``). Resumes from ``last.ckpt`` when the folder
    has one; if that resume fails, the step is redone from scratch once (its checkpoints set aside, see :func:`wipe`)."""
    missing = missing_configs(step.configs)
    if missing:
        return {"status": "failed", "error": f"config not found: {display_path(missing[0])}", "seconds": 0.0}
    worker_cmd = worker_cmd or default_worker_cmd()
    result = _launch(step, stepdir, timeout_s, worker_cmd, threads, engine, gpus)
    if result["status"] != "done" and result.get("resumed"):
        with (stepdir / "log.txt").open("a") as f:
            f.write(f"\n[compare] resume failed ({result.get('error')}); redoing the step from scratch (its "
                    f"checkpoints kept in {stepdir / SUPERSEDED})\n")
        wipe(stepdir, keep_log=True)
        result = _launch(step, stepdir, timeout_s, worker_cmd, threads, engine, gpus)
    return result


def default_worker_cmd() -> list[str]:
    """The worker: :mod:`chanmusic.runner.worker` in a fresh interpreter (``JOB.json`` is appended), or the command
    in ``$CHANMUSIC_WORKER`` (split as a shell would; e.g. the worker inside a container:
    ``apptainer exec img.sif python -m chanmusic.runner.worker --worker``)."""
    import shlex

    env = os.environ.get("CHANMUSIC_WORKER", "").strip()
    return shlex.split(env) if env else [sys.executable, "-m", "chanmusic.runner.worker", "--worker"]


SUPERSEDED = "superseded"   # checkpoints of attempts that were redone, kept: STEP/superseded/<time>/...


def wipe(d: Path, keep_log: bool = False) -> None:
    """Empty the folder ``d`` for a fresh attempt (keeping its ``log.txt`` with ``keep_log``). Checkpoints are
    never deleted: every ``*.ckpt`` under ``d`` moves to ``d/superseded/<time>/`` (same relative path) first."""
    if not d.exists():
        return
    keep = d / SUPERSEDED
    ckpts = [p for p in d.rglob("*.ckpt") if keep not in p.parents and p.is_file()]
    if ckpts:
        dest = keep / time.strftime("%Y%m%dT%H%M%S")
        while dest.exists():
            dest = dest.with_name(dest.name + "_")
        for p in ckpts:
            target = dest / p.relative_to(d)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, target)
    for p in d.iterdir():
        if (keep_log and p.name == "log.txt") or p.name == SUPERSEDED:
            continue
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def _launch(step: Step, stepdir: Path, timeout_s: float | None, worker_cmd: list[str],
            threads: int | None = None, engine: EngineSettings | None = None, gpus: GpuPool | None = None) -> dict:
    stepdir.mkdir(parents=True, exist_ok=True)
    over = stepdir / "compare_overrides.yaml"
    configs = list(step.configs) + [over]
    fit_done = read_json(stepdir / FIT_DONE)
    if fit_done and not (fit_done.get("checkpoint") and Path(fit_done["checkpoint"]).is_file()):
        (stepdir / FIT_DONE).unlink(missing_ok=True)
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
    with (stepdir / "log.txt").open("a") as log:
        log.write(f"\n[compare] {now()} step {step.name}: {'resume from ' + resume if resume else 'start'}\n")
    rc, cpu, error = submit_and_wait(list(worker_cmd) + [str(stepdir / "job.json")], stepdir, step.name, timeout_s,
                                     engine or EngineSettings(), threads, gpus, job_json=stepdir / "job.json")
    if error is not None:
        return {"status": "failed", "error": error, "seconds": round(time.time() - t0, 1), "resumed": bool(resume)}
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


def submit_and_wait(command: list[str], stepdir: Path, name: str, timeout_s: float | None, engine: EngineSettings,
                    threads: int | None = None, gpus: GpuPool | None = None,
                    job_json: Path | None = None) -> tuple[int | None, float, str | None]:
    """Hand ``command`` to the engine as one :class:`StepJob` (output in ``stepdir/log.txt``, submitit's files in
    ``stepdir/submitit``) and wait for it: (exit code, CPU seconds, error when the job itself did not finish)."""
    pinned = gpus.take() if gpus else None
    try:
        env = job_env(engine, threads, pinned)
        env["PYTHONPATH"] = os.pathsep.join([str(SOURCE_ROOT)] + ([os.environ["PYTHONPATH"]]
                                                                          if os.environ.get("PYTHONPATH") else []))
        executor = make_executor(engine, stepdir / "submitit", timeout_s, name)
        sj = StepJob(command, str(stepdir / "log.txt"), env, str(job_json) if job_json else None)
        (stepdir / EXIT_FILE).unlink(missing_ok=True)
        t0 = time.time()
        job = executor.submit(sj)
        (stepdir / "engine.json").write_text(json.dumps({"executor": engine.executor, "job_id": str(job.job_id),
                                                         "gpus": pinned, "submitted": now()}))
        with _LIVE_LOCK:
            _LIVE.add(job)
        try:
            poll = 0.2 if engine.executor == "local" else 5.0   # submitit's own wait polls once a second
            while not job.done():
                time.sleep(poll)
            if engine.executor == "local" and not job.paths.result_pickle.exists():
                raise RuntimeError("the job ended without a result (killed, or past its time limit)")
            out = job.result()
            return int(out["rc"]), float(out["cpu_s"]), None
        except Exception as e:  # noqa: BLE001 - submitit: the step failed, or the job was killed / timed out
            ended = read_exit(stepdir / "log.txt")
            if ended is not None and int(ended["rc"]) != 0:   # the step ran and failed: the job failed with it
                return int(ended["rc"]), float(ended["cpu_s"]), None
            if timeout_s and time.time() - t0 >= timeout_s - 1:
                error = f"TimeoutError: step {name} ran past {timeout_s:.0f} s"
            else:
                error = f"{engine.executor} job {job.job_id} did not finish: {first_line(str(e))}"
            with (stepdir / "log.txt").open("a") as log:
                log.write(f"\n[compare] {error}\n")
            return None, 0.0, error
        except BaseException:
            _cancel(job)
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(job)
    finally:
        if pinned:
            gpus.give(pinned)


_LIVE: set = set()   # submitit jobs running now (cancelled if the runner is interrupted)
_LIVE_LOCK = threading.Lock()


def kill_live_workers() -> None:
    """Cancel every job still running (a local job ends with its step's process group; a SLURM job is scancel'd)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for job in live:
        _cancel(job)
    for job in live:  # a local job's controller ends its task (and the task its step) within seconds
        proc = getattr(job, "_process", None)
        if proc is not None:
            try:
                proc.wait(timeout=15)
            except Exception:  # noqa: BLE001
                pass


def _cancel(job) -> None:
    """Cancel one job. A local job: SIGINT to its task process (the :class:`StepJob` then ends its step's process
    group), so submitit's controller ends quietly; if that is not possible, submitit's own cancel."""
    import signal

    proc = getattr(job, "_process", None)
    if proc is not None:
        try:
            kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            for pid in kids:
                os.kill(int(pid), signal.SIGINT)
            if kids:
                return
        except (OSError, ValueError):
            pass
    try:
        job.cancel()
    except Exception:  # noqa: BLE001 - already gone
        pass

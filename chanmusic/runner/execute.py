"""Running one step: its job handed to the engine (submitit, :mod:`chanmusic.runner.engine`), the wait, the result.

:func:`run_step` writes the step's ``job.json`` and override YAML into the step folder and submits a
:class:`~chanmusic.runner.engine.StepJob` that runs the worker (``python -m chanmusic.runner.worker --worker
JOB``, see :mod:`chanmusic.runner.worker`) with its output in ``log.txt``; submitit's own files go to
``STEP/submitit/`` and the job's id to ``STEP/engine.json``. It then reads back the ``result.json`` the worker
writes. A step resumes from its ``last.ckpt`` when the folder has one; if that resume fails, the step is redone
from scratch once, its checkpoints kept in ``STEP/superseded/<time>/`` (a folder is never emptied of checkpoints). Jobs still running when the runner is interrupted are cancelled
(:func:`kill_live_workers`). Time limits are the engine's (submitit's local limit, SLURM's ``--time``).

Every failure is recorded as the project's one line, ``chanmusic: error: <file/field>: <what> — <fix>``: the
worker's own (it ends the log and fills ``result.json``), or, for a worker that ended without one (killed, crashed
before writing it, past its time limit), the runner's (:func:`crash_line`), which it also appends to the log.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
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
from chanmusic.core.errors import DASH
from chanmusic.runner.status import first_line, now

#: the fix of a step that did not finish
RERUN = ("rerun the same `chanmusic compare` (same --out): finished steps are kept and this one resumes from its "
         "last checkpoint")


def run_step(step: Step, stepdir: Path, timeout_s: float | None, worker_cmd: list[str] | None = None,
             threads: int | None = None, engine: EngineSettings | None = None, gpus: GpuPool | None = None) -> dict:
    """Run one step as an engine job (the worker in its own process); returns its result dict (``status`` done|failed, ``error``,
    ``metrics`` path, ``checkpoint``, ``seconds``, ``commands``). Resumes from ``last.ckpt`` when the folder
    has one; if that resume fails, the step is redone from scratch once (its checkpoints set aside, see :func:`wipe`)."""
    missing = missing_configs(step.configs)
    if missing:
        return {"status": "failed", "seconds": 0.0, "error": f"chanmusic: error: {display_path(missing[0])}: config "
                f"not found {DASH} check the path in the spec (relative to its config_root)"}
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
        since = log.tell()   # this attempt's output starts here
    rc, cpu, error = submit_and_wait(list(worker_cmd) + [str(stepdir / "job.json")], stepdir, step.name, timeout_s,
                                     engine or EngineSettings(), threads, gpus, job_json=stepdir / "job.json")
    if error is not None:
        return {"status": "failed", "error": error, "seconds": round(time.time() - t0, 1), "resumed": bool(resume)}
    res = read_json(stepdir / "result.json")
    if res is None or (rc != 0 and res.get("status") == "done"):
        res = {**(res or {}), "status": "failed", "error": crash_line(step.name, stepdir / "log.txt", rc, since)}
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
                error = (f"chanmusic: error: step {name}: ran past its time limit of {timeout_s:.0f} s (the profile's "
                         f"step_timeout_s) {DASH} raise step_timeout_s, then {RERUN}")
            else:
                error = (f"chanmusic: error: step {name}: {engine.executor} job {job.job_id} did not finish "
                         f"({first_line(str(e))}) {DASH} {RERUN}")
            with (stepdir / "log.txt").open("a") as log:
                log.write(f"\n{error}\n")
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


def crash_line(name: str, log: Path, rc: int | None, since: int = 0) -> str:
    """The one line for step ``name`` whose worker ended without a result (or exited non-zero after one): the
    worker's own ``chanmusic: error:`` line when its output (``log`` from byte ``since``) has one; else killed by a
    signal, or crashed with its last exception line. Appended to ``log`` too, so the log ends with it."""
    try:
        with open(log, "rb") as fh:
            fh.seek(since)
            lines = [x.strip() for x in fh.read().decode(errors="replace").splitlines() if x.strip()]
    except OSError:
        lines = []
    own = [x for x in lines if x.startswith("chanmusic: error:")]
    if own:
        return own[-1][:1000]
    if rc is not None and rc < 0:
        try:
            sig = signal.Signals(-rc).name
        except ValueError:
            sig = f"signal {-rc}"
        line = f"chanmusic: error: step {name}: its worker was killed by {sig} {DASH} {RERUN}"
    else:
        exc = [x for x in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*", x)]
        tail = f" ({lines[-1][:200]})" if lines else ""
        what = exc[-1][:300] if exc else f"the worker exited with code {rc}{tail}"
        line = (f"chanmusic: error: {display_path(log)}: {what} {DASH} the step's worker crashed (its output is in "
                f"that log); fix the cause, then {RERUN}")
    try:
        with open(log, "a") as fh:
            fh.write(f"\n{line}\n")
    except OSError:
        pass
    return line


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

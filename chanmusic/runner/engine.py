"""Where a step runs: submitit's local or SLURM executor (the engine), and the one job it runs, :class:`StepJob`.

The runner plans, records status and tabulates; each step (a ``chanmusic prepare``, or the worker running a
step's ``fit``/``test``/``predict``) is handed to submitit as a :class:`StepJob`:

- ``local`` (default): :class:`submitit.LocalExecutor`, a process on this machine with submitit's time limit.
  On a multi-GPU node each running job is pinned to its own GPU(s) through ``CUDA_VISIBLE_DEVICES`` from a
  :class:`GpuPool` (submitit's local executor alone would give every job the first GPUs).
- ``slurm``: :class:`submitit.SlurmExecutor`, one ``sbatch`` job per step with the partition, GPUs per job,
  time limit and account of :class:`EngineSettings` (the spec's ``executor:`` section, then the flags).
  A job preempted or timed out is requeued by submitit and resumes from its ``last.ckpt``.

A :class:`StepJob` starts the step's command in its own process group with its output in the step's
``log.txt`` and returns the exit code and the CPU seconds it used; cancelling it ends that process group. A step
that exits non-zero raises :class:`StepFailed` in the job, so the job itself fails (``job.exception()``, ``sacct``
FAILED); its exit code and CPU seconds are first written to ``exit.json`` beside the log for the runner.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chanmusic.core.errors import InputError
from chanmusic.results.checkpoint_rule import FIT_DONE

EXECUTORS = ("local", "slurm")
LOCAL_NO_LIMIT_MIN = 60 * 24 * 30  # submitit's local executor always has a time limit: 30 days = none


@dataclass
class EngineSettings:
    """How steps are run. ``executor`` local|slurm; ``gpus_per_job`` (local: pinned per job, ``None`` = 1 when
    several GPUs are visible, else none); SLURM: ``partition``, ``time_min`` (per job), ``account``,
    ``cpus_per_job``, ``mem_gb``, ``setup`` (shell lines before the job, e.g. ``source .venv/bin/activate``),
    ``slurm_extra`` (more ``#SBATCH`` flags, e.g. ``{qos: high}``)."""

    executor: str = "local"
    gpus_per_job: int | None = None
    partition: str | None = None
    time_min: int | None = None
    account: str | None = None
    cpus_per_job: int | None = None
    mem_gb: float | None = None
    setup: list[str] = field(default_factory=list)
    slurm_extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict | None) -> "EngineSettings":
        d = dict(d or {})
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise InputError("spec: executor", f"unknown setting(s) {unknown}", f"use {sorted(cls.__dataclass_fields__)}")
        s = cls(**d)
        if s.executor not in EXECUTORS:
            raise InputError("spec: executor", f"{s.executor!r} is not one of {EXECUTORS}", "pick local or slurm")
        return s

    def to_json(self) -> dict:
        return asdict(self)


EXIT_FILE = "exit.json"


class StepFailed(RuntimeError):
    """A step whose command exited non-zero: raised in its job so the scheduler records a failed job."""


def read_exit(log: Path) -> dict | None:
    """The ``exit.json`` a :class:`StepJob` wrote beside ``log`` (exit code, CPU seconds); None when absent."""
    try:
        return json.loads((Path(log).parent / EXIT_FILE).read_text())
    except (OSError, ValueError):
        return None


class StepJob:
    """One step's command, run where the executor puts it: output appended to ``log``, environment changed by
    ``env`` (a value of ``None`` removes the variable). Returns ``{"rc": 0, "cpu_s": CPU seconds}``; a non-zero
    exit raises :class:`StepFailed` (after writing ``exit.json``)."""

    def __init__(self, command: list[str], log: str, env: dict[str, str | None] | None = None,
                 job_json: str | None = None, attempt: int = 0):
        self.command, self.log, self.env = list(command), str(log), dict(env or {})
        self.job_json, self.attempt = job_json, attempt

    def __call__(self) -> dict:
        env = dict(os.environ)
        for k, v in self.env.items():
            env.pop(k, None) if v is None else env.__setitem__(k, v)
        if self.attempt and self.job_json:
            refresh_resume(Path(self.job_json))
        exit_file = Path(self.log).parent / EXIT_FILE
        exit_file.unlink(missing_ok=True)
        with open(self.log, "a") as log:
            proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
            try:
                _, status, ru = os.wait4(proc.pid, 0)
            except BaseException:  # cancelled, timed out or preempted: end the step's whole process group
                end_group(proc)
                raise
        out = {"rc": os.waitstatus_to_exitcode(status), "cpu_s": round(ru.ru_utime + ru.ru_stime, 1)}
        exit_file.write_text(json.dumps(out))
        if out["rc"] != 0:
            raise StepFailed(f"step command exited with code {out['rc']} (its log: {self.log})")
        return out

    def checkpoint(self, *args: Any, **kwargs: Any):
        """submitit's requeue hook (SLURM preemption or time limit): run again, resuming from ``last.ckpt``."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(StepJob(self.command, self.log, self.env, self.job_json, self.attempt + 1))


def refresh_resume(job_json: Path) -> None:
    """A requeued step resumes from the ``last.ckpt`` its interrupted attempt left (unless its fit had finished)."""
    job = json.loads(job_json.read_text())
    d = Path(job["dir"])
    last = d / "checkpoints" / "last.ckpt"
    if not (d / FIT_DONE).is_file() and last.is_file():
        job["resume"] = str(last)
        job_json.write_text(json.dumps(job, indent=2))


def end_group(proc: subprocess.Popen) -> None:
    """End the process group of a step we started (SIGTERM, then SIGKILL after 10 s)."""
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


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set (ids or UUIDs), else ``nvidia-smi``'s."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip().isdigit()]


class GpuPool:
    """The local GPUs handed out to running jobs, ``per_job`` at a time (a job waits for a free set)."""

    def __init__(self, gpus: list[str], per_job: int):
        self.free = list(gpus)
        self.per_job = per_job
        self._cv = threading.Condition()

    @classmethod
    def for_settings(cls, settings: EngineSettings) -> "GpuPool | None":
        """A pool when the local executor should pin GPUs (several visible, or ``gpus_per_job`` set); else None."""
        if settings.executor != "local":
            return None
        gpus = visible_gpus()
        per_job = settings.gpus_per_job if settings.gpus_per_job is not None else (1 if len(gpus) > 1 else 0)
        if per_job <= 0:
            return None
        if len(gpus) < per_job:
            raise InputError("--gpus-per-job", f"{per_job} GPU(s) per job but only {len(gpus)} GPU(s) visible "
                             f"({','.join(gpus) or 'none'})", "lower --gpus-per-job or set CUDA_VISIBLE_DEVICES")
        return cls(gpus, per_job)

    def take(self) -> list[str]:
        with self._cv:
            self._cv.wait_for(lambda: len(self.free) >= self.per_job)
            got, self.free = self.free[:self.per_job], self.free[self.per_job:]
            return got

    def give(self, gpus: list[str]) -> None:
        with self._cv:
            self.free += gpus
            self._cv.notify_all()


def make_executor(settings: EngineSettings, folder: Path, timeout_s: float | None, name: str):
    """A submitit executor for one step whose files go to ``folder``: the local one (time limit
    ``timeout_s``, no requeue) or the SLURM one with the settings' resources."""
    import submitit

    if settings.executor == "local":
        ex = submitit.LocalExecutor(folder, max_num_timeout=0)
        ex.update_parameters(timeout_min=timeout_s / 60 if timeout_s else LOCAL_NO_LIMIT_MIN,
                             stderr_to_stdout=True)
        return ex
    ex = submitit.SlurmExecutor(folder, max_num_timeout=3)
    params: dict[str, Any] = {"job_name": f"chanmusic-{name}", "nodes": 1, "ntasks_per_node": 1,
                              "stderr_to_stdout": True}
    if settings.partition:
        params["partition"] = settings.partition
    if settings.account:
        params["account"] = settings.account
    if settings.gpus_per_job:
        params["gpus_per_node"] = int(settings.gpus_per_job)
    if settings.cpus_per_job:
        params["cpus_per_task"] = int(settings.cpus_per_job)
    if settings.mem_gb:
        params["mem"] = f"{settings.mem_gb:g}GB"
    minutes = settings.time_min or (math.ceil(timeout_s / 60) if timeout_s else None)
    if minutes:
        params["time"] = int(minutes)
    if settings.setup:
        params["setup"] = list(settings.setup)
    if settings.slurm_extra:
        params["additional_parameters"] = dict(settings.slurm_extra)
    ex.update_parameters(**params)
    return ex


def job_env(settings: EngineSettings, threads: int | None, gpus: list[str] | None) -> dict[str, str | None]:
    """The environment changes of one job: CPU threads; on the local executor the pinned GPUs, else the
    runner's own ``CUDA_VISIBLE_DEVICES`` (submitit's local executor would otherwise hide every GPU)."""
    env: dict[str, str | None] = {"PYTHONUNBUFFERED": "1"}
    if settings.executor == "slurm" and settings.cpus_per_job and not threads:
        threads = settings.cpus_per_job
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if settings.executor == "local":
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus) if gpus else os.environ.get("CUDA_VISIBLE_DEVICES")
    return env

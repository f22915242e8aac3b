"""``chanmusic compare --detach``: the whole plan submitted to SLURM at once, with dependencies, then return.

The login-node process only submits: one job per piece of the plan, each a :class:`PlanTask` that runs that
piece with the ordinary :class:`~chanmusic.runner.sweep.Runner` inside the job (its steps as local jobs of
that node), so results, ``status.json`` files, resumption and the report are the same as an attached run:

- ``prepare``: the data caches (once; everything else waits for it: ``afterok``);
- one job per shared pretraining (``afterok`` on prepare);
- one job per run (music or control), after its pretraining (``afterany``: a failed pretraining is recorded
  in the run's status as the reason, not retried);
- ``report``: the table (``OUT/results.md``) once every run has ended (``afterany``).

A piece that fails raises in its job, so ``sacct`` shows it FAILED. The job ids are recorded in
``OUT/detached.json``; ``chanmusic compare --status OUT`` reads them with each run's ``status.json``.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Callable

from chanmusic.core.errors import InputError
from chanmusic.results.layout import pretrain_folder, pretrain_key
from chanmusic.runner.engine import EngineSettings, make_executor
from chanmusic.runner.plan import RunPlan, plan_runs, run_steps
from chanmusic.runner.spec import Spec
from chanmusic.runner.status import now

DETACHED = "detached.json"
LIVE_STATES = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING")


class PlanTask:
    """One detached job: ``kind`` prepare | pretrain | run | report, ``index`` the plan's run (pretrain: its
    first run). Runs the piece with a local :class:`Runner` in the job and raises if the piece failed."""

    def __init__(self, kind: str, spec: dict, out: str, index: int | None = None,
                 worker_cmd: list[str] | None = None):
        self.kind, self.spec, self.out, self.index, self.worker_cmd = kind, spec, out, index, worker_cmd

    def __call__(self) -> str:
        from chanmusic.runner.sweep import Runner

        spec = Spec.from_json(self.spec)
        spec = replace(spec, engine={**spec.engine, "executor": "local"})   # steps run on this job's node
        out = Path(self.out)
        plans = plan_runs(spec, out)
        runner = Runner(spec, out, worker_cmd=self.worker_cmd)
        if self.kind == "report":
            from chanmusic import report

            report.write_results(out)
            return "report written"
        if self.kind == "prepare":
            runner.prepare_caches(plans)
            return "caches prepared"
        if spec.folds:
            runner.fold_subjects = runner.resolve_folds(plans)
        plan = plans[int(self.index)]
        if self.kind == "pretrain":
            _, error = runner.pretrain(plan.row, plan.seed, plan.fold)
            if error:
                raise RuntimeError(f"pretraining {pretrain_key(plan.row.pretrain)} seed{plan.seed} failed: {error}")
            return "pretraining done"
        if plan.row.pretrain:   # its pretraining job has ended: a failure there is this run's reason, not retried
            runner._pretrain_attempted.add(str(pretrain_folder(out, plan.row.pretrain, plan.seed, plan.fold)))
        st = runner.run_one(plan)
        if st["status"] != "done":
            raise RuntimeError(f"run {plan.label} failed at {st.get('failed_step')}: {st.get('error')}")
        return f"run {plan.label} done"

    def checkpoint(self, *args, **kwargs):
        """Requeued on preemption: the same piece again (the runner resumes its steps from their checkpoints)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(PlanTask(self.kind, self.spec, self.out, self.index, self.worker_cmd))


def submit_plan(spec: Spec, out: Path, worker_cmd: list[str] | None = None, prepare: bool = True,
                printer: Callable[[str], None] = print) -> dict:
    """Submit every piece of the plan as SLURM jobs with dependencies; record and return ``OUT/detached.json``."""
    engine = EngineSettings.from_dict(spec.engine)
    if engine.executor != "slurm":
        raise InputError("--detach", "detaching needs the SLURM executor (local jobs end with this process)",
                         "add --executor slurm (and --time MINUTES), or drop --detach")
    timeout = spec.profile.get("step_timeout_s")
    per_step = engine.time_min or (int(timeout // 60) + 1 if timeout else None)
    if not per_step:
        raise InputError("--time", "SLURM jobs need a time limit", "pass --time MINUTES (per step)")
    plans = plan_runs(spec, out)
    folder = out / "detached" / "submitit"
    payload = spec.to_json()

    def submit(task: PlanTask, name: str, steps: int, after: list[str]) -> str:
        ex = make_executor(engine, folder, timeout, name)
        params = {"time": int(per_step * max(1, steps))}
        if after:
            params["dependency"] = ",".join(after)
        ex.update_parameters(**params)
        return str(ex.submit(task).job_id)

    jobs: dict = {"submitted": now(), "prepare": None, "pretrain": {}, "runs": {}, "report": None}
    base: list[str] = []
    if prepare:
        jobs["prepare"] = submit(PlanTask("prepare", payload, str(out), None, worker_cmd), "prepare", 1, [])
        base = [f"afterok:{jobs['prepare']}"]
    for i, plan in enumerate(plans):
        after = list(base)
        if plan.row.pretrain:
            key = str(pretrain_folder(out, plan.row.pretrain, plan.seed, plan.fold))
            if key not in jobs["pretrain"]:
                jobs["pretrain"][key] = submit(PlanTask("pretrain", payload, str(out), i, worker_cmd),
                                               "pretrain", 1, base)
            after.append(f"afterany:{jobs['pretrain'][key]}")
        n_steps = len(run_steps(spec, out, plan, None))
        jobs["runs"][plan.label] = submit(PlanTask("run", payload, str(out), i, worker_cmd), "run", n_steps, after)
    jobs["report"] = submit(PlanTask("report", payload, str(out), None, worker_cmd), "report", 1,
                            ["afterany:" + ":".join(jobs["runs"].values())])
    (out / DETACHED).write_text(json.dumps(jobs, indent=2))
    printer(f"[compare] submitted {len(plans)} runs, {len(jobs['pretrain'])} pretraining(s)"
            f"{', the cache pass' if prepare else ''} and the report as SLURM jobs with dependencies; "
            f"follow them with: chanmusic compare --status {out}")
    return jobs


def job_states(out: Path) -> dict[str, str]:
    """SLURM state of every job in ``OUT/detached.json`` (``{}`` without one, or without ``sacct``), from ``sacct``."""
    d = read_detached(out)
    if not d or not shutil.which("sacct"):   # not detached, or not on the cluster: states unknown
        return {}
    import subprocess

    ids = [i for i in [d.get("prepare"), d.get("report"), *d["pretrain"].values(), *d["runs"].values()] if i]
    try:
        text = subprocess.run(["sacct", "-j", ",".join(ids), "-X", "-n", "--parsable2", "-o", "JobID,State"],
                              capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    states = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0] in ids:
            states[parts[0]] = parts[1]
    return states


def read_detached(out: Path) -> dict | None:
    try:
        return json.loads((Path(out) / DETACHED).read_text())
    except (OSError, ValueError):
        return None


def refuse_if_detached_live(out: Path) -> None:
    """A detached plan whose jobs are still queued or running owns ``OUT``: a second runner is refused."""
    live = sorted(i for i, s in job_states(out).items() if s.split()[0] in LIVE_STATES)
    if live:
        raise InputError(f"--out {out}", f"a detached comparison is still running there (SLURM jobs {', '.join(live)})",
                         f"wait for it (chanmusic compare --status {out}), scancel its jobs, or pass another --out")

"""The sweep: :class:`Runner` runs the planned runs, one at a time or ``jobs`` at a time.

Per run it skips one finished earlier (``status.json`` says ``done``), runs the row's shared pretraining
(once per seed and fold; runs in parallel that share it wait for the one that runs it), then the run's steps
in order, reusing steps finished earlier until one has to be (re)run, and records everything in the run's
``status.json``. Every step is a job of the engine (:mod:`chanmusic.runner.engine`: submitit, local or SLURM);
the runner's threads only wait for them. With ``jobs > 1`` locally each job gets ``cores // jobs`` threads
(and its own GPU on a multi-GPU node); before parallel runs, SLURM runs or folds, the data caches are prepared
once (:mod:`chanmusic.runner.cache_pass`), and folds get their subjects (:mod:`chanmusic.runner.folds`). One
progress line is printed per finished step and per finished run, with the time so far and an estimate of what
remains from the work units (epochs) of every planned step (:class:`chanmusic.runner.progress.Progress`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

from chanmusic.core.errors import InputError
from chanmusic.runner import cache_pass, folds
from chanmusic.runner.engine import EngineSettings, GpuPool
from chanmusic.runner.execute import default_worker_cmd, kill_live_workers, run_step, wipe
from chanmusic.results.layout import pretrain_folder, pretrain_key
from chanmusic.runner.plan import RunPlan, Step, base_configs, display_path, missing_configs, pretrain_step, run_steps
from chanmusic.runner.progress import Progress, step_units
from chanmusic.runner.spec import Row, Spec
from chanmusic.runner.status import merged_metrics, now, read_status, step_outputs_exist, write_status


class Runner:
    """Runs the planned runs in order, skipping finished ones; prints one progress line per run."""

    def __init__(self, spec: Spec, out: Path, redo: set[str] | None = None, worker_cmd: list[str] | None = None,
                 printer: Callable[[str], None] = print, jobs: int = 1):
        self.spec, self.out, self.redo, self.print = spec, Path(out), set(redo or ()), printer
        self.worker_cmd = list(worker_cmd) if worker_cmd else default_worker_cmd()
        self.timeout = spec.profile.get("step_timeout_s")
        self.jobs = max(1, int(jobs))
        self.engine = EngineSettings.from_dict(spec.engine)
        local = self.engine.executor == "local"
        if not local and not (self.engine.time_min or self.timeout):
            raise InputError("--time", "SLURM jobs need a time limit (submitit's default is 5 minutes)",
                             "pass --time MINUTES or set time_min in the spec's executor section")
        if not local and not shutil.which("sbatch"):
            raise InputError("--executor slurm", "no `sbatch` on PATH: this machine cannot submit SLURM jobs",
                             "run on the cluster's login node, or use --executor local")
        # with parallel local runs each job gets its share of the cores (and, on a multi-GPU node, its own GPU)
        self.threads = max(1, (os.cpu_count() or 1) // self.jobs) if self.jobs > 1 and local else None
        self.gpus = GpuPool.for_settings(self.engine)
        self.fold_subjects: list[list] = []
        self._pretrain_attempted: set[str] = set()
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._progress: Progress | None = None
        self._here = threading.local()  # .plan: the run this thread is running (its steps' progress lines)

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(key, threading.Lock())

    # -- the pieces
    def fingerprint(self, row: Row) -> str:
        """A hash of what a row's runs are made of (config files, row args, profile, extra args): a finished run
        whose fingerprint differs is kept but flagged."""
        h = hashlib.sha256()
        paths = [*base_configs(self.spec), *(self.spec.config_path(c) for c in (row.pretrain or []) + row.configs)]
        for p in paths:
            h.update(str(p).encode())
            h.update(p.read_bytes() if p.is_file() else b"<missing>")
        h.update(json.dumps([row.args, self.spec.profile, self.spec.extra_args], sort_keys=True, default=str).encode())
        return h.hexdigest()[:16]

    def _run_step(self, step: Step, stepdir: Path) -> dict:
        t0 = time.time()
        res = run_step(step, stepdir, self.timeout, self.worker_cmd, self.threads, self.engine, self.gpus)
        if self._progress is not None and res.get("status") == "done":
            line = self._progress.step_done(getattr(self._here, "plan", None), step.name, step_units(step),
                                            time.time() - t0)
            if line:
                self.print(line)
        return res

    def subjects_of(self, plan: RunPlan) -> list | None:
        """The held-out subjects of the plan's fold (None without folds)."""
        return self.fold_subjects[plan.fold] if plan.fold is not None else None

    def pretrain(self, row: Row, seed: int, fold: int | None = None) -> tuple[str | None, str | None]:
        """(checkpoint, error) of the row's shared pretraining run for ``seed`` (and fold; run it if needed;
        runs in parallel that share it wait for the one that runs it)."""
        d = pretrain_folder(self.out, row.pretrain, seed, fold)
        with self._lock(str(d)):
            return self._pretrain(row, seed, d, fold)

    def _pretrain(self, row: Row, seed: int, d: Path, fold: int | None = None) -> tuple[str | None, str | None]:
        st = read_status(d)
        if st and st.get("status") == "done" and st.get("checkpoint") and Path(st["checkpoint"]).is_file():
            return st["checkpoint"], None
        if st and st.get("status") == "failed" and str(d) in self._pretrain_attempted:
            return None, st.get("error")  # already failed in this call: don't retry it for the control run
        step = pretrain_step(self.spec, self.out, row, d / "pretrain", seed,
                             self.fold_subjects[fold] if fold is not None else None)
        write_status(d, {"status": "running", "configs": row.pretrain, "seed": seed, "started": now()})
        self.print(f"[compare]   pretraining {pretrain_key(row.pretrain)}{f' fold{fold}' if fold is not None else ''} "
                   f"seed{seed} ...")
        res = self._run_step(step, d / "pretrain")
        st = {"status": res["status"], "configs": row.pretrain, "seed": seed, "checkpoint": res.get("checkpoint"),
              "error": res.get("error"), "seconds": res.get("seconds"), "cpu_s": res.get("cpu_s"),
              "commands": res.get("commands"), "finished": now()}
        write_status(d, st)
        self._pretrain_attempted.add(str(d))
        return (res.get("checkpoint"), None) if res["status"] == "done" else (None, res.get("error"))

    # -- one run
    def run_one(self, plan: RunPlan) -> dict:
        """Run (or skip, or finish) one planned run; returns its final status (also in its ``status.json``)."""
        self._here.plan = plan
        st = read_status(plan.dir)
        fp = self.fingerprint(plan.row)
        if st and st.get("status") == "done":
            if st.get("fingerprint") != fp:
                st["note"] = "spec or YAML changed since this run finished; kept (use --redo to rerun)"
            st["skipped"] = True
            return st
        prev_steps = (st or {}).get("steps", {})
        status = {"row": plan.row.name, "label": plan.row.label, "section": plan.row.section, "seed": plan.seed,
                  "control": plan.control, "status": "running", "started": now(), "fingerprint": fp,
                  "steps": dict(prev_steps)}
        if plan.fold is not None:
            by = "test_songs" if self.spec.folds.get("by") == "songs" else "test_subjects"
            status.update({"fold": plan.fold, by: self.subjects_of(plan)})
        write_status(plan.dir, status)
        t0 = time.time()
        error = failed_step = None
        ckpt = None
        if plan.row.pretrain:
            missing = missing_configs([self.spec.config_path(c) for c in plan.row.pretrain])
            if missing:
                error, failed_step = (f"chanmusic: error: {display_path(missing[0])}: config not found — check the "
                                      f"path in the spec (relative to its config_root)"), "pretrain"
            else:
                ckpt, error = self.pretrain(plan.row, plan.seed, plan.fold)
                if error:   # the step's one line as it is (failed_step says it was the pretraining)
                    failed_step = "pretrain"
            status["steps"]["pretrain"] = {"status": "failed" if error else "done", "checkpoint": ckpt,
                                           "dir": str(pretrain_folder(self.out, plan.row.pretrain, plan.seed,
                                                                   plan.fold)),
                                           **({"error": error} if error else {})}
        if error is None:
            align_ckpt = None
            ran = False  # once a step is (re)run, the steps after it are too (they depend on its outputs)
            for step in run_steps(self.spec, self.out, plan, ckpt, self.subjects_of(plan)):
                done = prev_steps.get(step.name, {})
                if not ran and done.get("status") == "done" and step_outputs_exist(done):
                    res = done
                else:
                    ran = True
                    if step.name == "reconstruct" and align_ckpt:
                        step.args = [f"--{self.spec.reconstruct.get('ckpt_arg', 'model.init_args.init_from')}",
                                     align_ckpt] + step.args
                    res = self._run_step(step, plan.dir / step.name)
                    res["dir"] = str(plan.dir / step.name)
                status["steps"][step.name] = res
                write_status(plan.dir, status)
                if res["status"] != "done":
                    error, failed_step = res.get("error", "failed"), step.name
                    break
                if step.name == "align":
                    align_ckpt = res.get("checkpoint")
        status["metrics"] = merged_metrics(status)
        cpu = sum((r or {}).get("cpu_s") or 0.0 for r in status["steps"].values())
        status.update(status="failed" if error else "done", error=error, failed_step=failed_step,
                      seconds=round(time.time() - t0, 1), cpu_s=round(cpu, 1), finished=now())
        write_status(plan.dir, status)
        return status

    def run_all(self, plans: list[RunPlan]) -> list[dict]:
        """Run ``plans`` (``jobs`` at a time); returns their statuses in plan order."""
        self._pretrain_attempted = set()
        for plan in plans:  # --redo: forget these rows' runs (their shared pretraining is kept)
            if plan.row.name in self.redo:
                wipe(plan.dir)
        progress = self._progress = Progress(plans, self.jobs, steps=self.step_counts(plans),
                                             units=self.work_units(plans))
        if self.jobs > 1 or self.engine.executor != "local" or self.spec.folds:
            self.prepare_caches(plans)
        if self.spec.folds:
            self.fold_subjects = self.resolve_folds(plans)
        if self.jobs == 1:
            out = []
            for plan in plans:
                progress.start(plan)
                st = self.run_one(plan)
                out.append(st)
                self.print(progress.finish(plan, st))
            return out
        from concurrent.futures import ThreadPoolExecutor, as_completed

        results: dict[int, dict] = {}

        def one(i: int) -> tuple[int, dict]:
            progress.start(plans[i])
            return i, self.run_one(plans[i])

        order = start_order(plans)
        with ThreadPoolExecutor(self.jobs, thread_name_prefix="compare") as ex:
            futures = [ex.submit(one, i) for i in order]
            try:
                for fut in as_completed(futures):
                    i, st = fut.result()
                    results[i] = st
                    self.print(progress.finish(plans[i], st))
            except BaseException:
                for f in futures:
                    f.cancel()
                kill_live_workers()
                raise
        return [results[i] for i in range(len(plans))]

    def step_counts(self, plans: list[RunPlan]) -> dict[int, int]:
        """id(plan) -> its steps, the shared pretraining counted for the first run that needs it."""
        seen: set[tuple] = set()
        out = {}
        for i in start_order(plans):
            p = plans[i]
            key = (tuple(p.row.pretrain or ()), p.seed, p.fold)
            out[id(p)] = len(run_steps(self.spec, self.out, p, None)) + (1 if p.row.pretrain and key not in seen else 0)
            seen.add(key)
        return out

    def work_units(self, plans: list[RunPlan]) -> dict[int, float]:
        """id(plan) -> its work units (:func:`chanmusic.runner.progress.step_units` of its steps), the shared
        pretraining counted for the first run that needs it; runs already done count 0."""
        seen: set[tuple] = set()
        out = {}
        for i in start_order(plans):
            p = plans[i]
            key = (tuple(p.row.pretrain or ()), p.seed, p.fold)
            done = p.row.name not in self.redo and (read_status(p.dir) or {}).get("status") == "done"
            units = 0.0 if done else sum(step_units(s) for s in run_steps(self.spec, self.out, p, None))
            if p.row.pretrain and key not in seen and not done:
                pre = read_status(pretrain_folder(self.out, p.row.pretrain, p.seed, p.fold)) or {}
                if pre.get("status") != "done":
                    units += step_units(pretrain_step(self.spec, self.out, p.row, p.dir, p.seed))
                seen.add(key)
            out[id(p)] = units
        return out

    def steps_of(self, plans: list[RunPlan]) -> list[Step]:
        """Every step the plans will run (pretraining included), before any has run."""
        steps: list[Step] = []
        for plan in plans:
            steps += run_steps(self.spec, self.out, plan, None)
            if plan.row.pretrain:
                steps.append(pretrain_step(self.spec, self.out, plan.row, plan.dir, plan.seed))
        return steps

    def prepare_caches(self, plans: list[RunPlan]) -> None:
        """Build each distinct data cache once, before the runs (two jobs preparing the same cache at the same
        time would overwrite each other's partial folder), as jobs of the engine."""
        cache_pass.prepare_caches(self.steps_of(plans), self.spec.extra_args, self.out, self.print,
                                  lambda cmd, d, name: self._submit(cmd, d, name))

    def _submit(self, cmd: list[str], d: Path, name: str):
        """A prepare job: it runs alone, so with every core (no thread limit)."""
        from chanmusic.runner.execute import submit_and_wait

        return submit_and_wait(cmd, d, name, self.timeout, self.engine, None, self.gpus)

    def resolve_folds(self, plans: list[RunPlan]) -> list[list]:
        """The subjects (or songs) each fold holds out, from the prepared cache of the first planned step; recorded
        in ``OUT/folds.json``."""
        by = str(self.spec.folds.get("by", "subjects"))
        assigned = folds.resolve(by, self.steps_of(plans[:1])[0], self.spec.extra_args, int(self.spec.folds["k"]))
        folds.record(self.out, self.spec.folds, assigned)
        self.print(f"[compare] {len(assigned)} folds by {by}: " +
                   "; ".join(f"fold{i} holds out {a}" for i, a in enumerate(assigned)))
        return assigned


def start_order(plans: list[RunPlan]) -> list[int]:
    """The order parallel runs start in: the first run of each shared pretraining (the longest chains), then the
    runs that need none, then the other runs of each pretraining (which would only wait for it if started early)."""
    seen: set[tuple] = set()
    first, free, rest = [], [], []
    for i, p in enumerate(plans):
        if not p.row.pretrain:
            free.append(i)
            continue
        key = (tuple(p.row.pretrain), p.seed, p.fold)
        (rest if key in seen else first).append(i)
        seen.add(key)
    return first + free + rest

"""The sweep: :class:`Runner` runs the planned runs, one at a time or ``jobs`` at a time in a thread pool.

Per run it skips one finished earlier (``status.json`` says ``done``), runs the row's shared pretraining
(once per seed; runs in parallel that share it wait for the one that runs it), then the run's steps in order,
reusing steps finished earlier until one has to be (re)run, and records everything in the run's
``status.json``. With ``jobs > 1`` each worker gets ``cores // jobs`` threads and the data caches are prepared
once before (:mod:`chanmusic.runner.cache_pass`). One progress line is printed per finished run.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Callable

from chanmusic.runner import cache_pass
from chanmusic.runner.execute import default_worker_cmd, kill_live_workers, run_step, wipe
from chanmusic.runner.plan import (RunPlan, Step, base_configs, display_path, missing_configs, pretrain_dir,
                                   pretrain_key, pretrain_step, run_steps)
from chanmusic.runner.spec import Row, Spec
from chanmusic.runner.status import (merged_metrics, now, progress_line, read_status, step_outputs_exist,
                                     write_status)


class Runner:
    """Runs the planned runs in order, skipping finished ones; prints one progress line per run."""

    def __init__(self, spec: Spec, out: Path, redo: set[str] | None = None, worker_cmd: list[str] | None = None,
                 printer: Callable[[str], None] = print, jobs: int = 1):
        self.spec, self.out, self.redo, self.print = spec, Path(out), set(redo or ()), printer
        self.worker_cmd = list(worker_cmd) if worker_cmd else default_worker_cmd()
        self.timeout = spec.profile.get("step_timeout_s")
        self.jobs = max(1, int(jobs))
        # with parallel runs each worker gets its share of the cores
        self.threads = max(1, (os.cpu_count() or 1) // self.jobs) if self.jobs > 1 else None
        self._pretrain_attempted: set[str] = set()
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

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

    def pretrain(self, row: Row, seed: int) -> tuple[str | None, str | None]:
        """(checkpoint, error) of the row's shared pretraining run for ``seed`` (run it if needed; runs in
        parallel that share it wait for the one that runs it)."""
        d = pretrain_dir(self.out, row.pretrain, seed)
        with self._lock(str(d)):
            return self._pretrain(row, seed, d)

    def _pretrain(self, row: Row, seed: int, d: Path) -> tuple[str | None, str | None]:
        st = read_status(d)
        if st and st.get("status") == "done" and st.get("checkpoint") and Path(st["checkpoint"]).is_file():
            return st["checkpoint"], None
        if st and st.get("status") == "failed" and str(d) in self._pretrain_attempted:
            return None, st.get("error")  # already failed in this call: don't retry it for the control run
        step = pretrain_step(self.spec, self.out, row, d / "pretrain", seed)
        write_status(d, {"status": "running", "configs": row.pretrain, "seed": seed, "started": now()})
        self.print(f"[compare]   pretraining {pretrain_key(row.pretrain)} seed{seed} ...")
        res = run_step(step, d / "pretrain", self.timeout, self.worker_cmd, self.threads)
        st = {"status": res["status"], "configs": row.pretrain, "seed": seed, "checkpoint": res.get("checkpoint"),
              "error": res.get("error"), "seconds": res.get("seconds"), "cpu_s": res.get("cpu_s"),
              "commands": res.get("commands"), "finished": now()}
        write_status(d, st)
        self._pretrain_attempted.add(str(d))
        return (res.get("checkpoint"), None) if res["status"] == "done" else (None, res.get("error"))

    # -- one run
    def run_one(self, plan: RunPlan) -> dict:
        """Run (or skip, or finish) one planned run; returns its final status (also in its ``status.json``)."""
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
        write_status(plan.dir, status)
        t0 = time.time()
        error = failed_step = None
        ckpt = None
        if plan.row.pretrain:
            missing = missing_configs([self.spec.config_path(c) for c in plan.row.pretrain])
            if missing:
                error, failed_step = f"config not found: {display_path(missing[0])}", "pretrain"
            else:
                ckpt, error = self.pretrain(plan.row, plan.seed)
                if error:
                    failed_step = "pretrain"
                    error = f"pretraining failed: {error}"
            status["steps"]["pretrain"] = {"status": "failed" if error else "done", "checkpoint": ckpt,
                                           "dir": str(pretrain_dir(self.out, plan.row.pretrain, plan.seed)),
                                           **({"error": error} if error else {})}
        if error is None:
            align_ckpt = None
            ran = False  # once a step is (re)run, the steps after it are too (they depend on its outputs)
            for step in run_steps(self.spec, self.out, plan, ckpt):
                done = prev_steps.get(step.name, {})
                if not ran and done.get("status") == "done" and step_outputs_exist(done):
                    res = done
                else:
                    ran = True
                    if step.name == "reconstruct" and align_ckpt:
                        step.args = [f"--{self.spec.reconstruct.get('ckpt_arg', 'model.init_args.align_checkpoint')}",
                                     align_ckpt] + step.args
                    res = run_step(step, plan.dir / step.name, self.timeout, self.worker_cmd, self.threads)
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
        t_start = time.time()
        if self.jobs == 1:
            out = []
            for i, plan in enumerate(plans, 1):
                t0 = time.time()
                st = self.run_one(plan)
                out.append(st)
                self.print(progress_line(i, len(plans), plan, st, time.time() - t0, time.time() - t_start))
            return out
        from concurrent.futures import ThreadPoolExecutor, as_completed

        self.prepare_caches(plans)
        results: dict[int, dict] = {}

        def one(i: int) -> tuple[int, dict, float]:
            t0 = time.time()
            return i, self.run_one(plans[i]), time.time() - t0

        with ThreadPoolExecutor(self.jobs, thread_name_prefix="compare") as ex:
            futures = [ex.submit(one, i) for i in range(len(plans))]
            try:
                for n, fut in enumerate(as_completed(futures), 1):
                    i, st, dt = fut.result()
                    results[i] = st
                    self.print(progress_line(n, len(plans), plans[i], st, dt, time.time() - t_start))
            except BaseException:
                for f in futures:
                    f.cancel()
                kill_live_workers()
                raise
        return [results[i] for i in range(len(plans))]

    def prepare_caches(self, plans: list[RunPlan]) -> None:
        """Before parallel runs: build each distinct data cache once (two workers preparing the same cache at
        the same time would overwrite each other's partial folder)."""
        steps: list[Step] = []
        for plan in plans:
            steps += run_steps(self.spec, self.out, plan, None)
            if plan.row.pretrain:
                steps.append(pretrain_step(self.spec, self.out, plan.row, plan.dir, plan.seed))
        cache_pass.prepare_caches(steps, self.spec.extra_args, self.out, self.print)

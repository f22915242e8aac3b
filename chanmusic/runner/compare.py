"""``chanmusic compare``: the paper's comparison — every row and ablation, over seeds, each with its control.

    chanmusic compare --config experiments/paper.yaml [--quick] [--out DIR] [--rows a,b] [--seeds N]
                      [--jobs N] [--redo a,b] [--no-report] [--dry-run] [-- EXTRA ARGS FOR EVERY RUN]

    chanmusic compare --quick                          # demo data, tiny models, 1 seed: ~15 min on 2 CPU cores
    chanmusic compare --out runs/paper -- --data.root /data/NMED-T --data.cache_dir /scratch/cache   # GPU, 5 seeds

The spec (``experiments/paper.yaml``) lists rows (main table) and ablations; each row is a YAML list run as
``fit`` then ``test`` (+ a shared pretraining step where the row declares ``pretrain:``, + the reconstruction
step where enabled), for each seed, once on the real pairing and once as its no-music control
(``--data.control shift``). Layout of ``OUT``:

    OUT/spec.json                       the resolved spec and profile (what ``chanmusic report`` reads)
    OUT/runs/<row>/seed<k>[-control]/   status.json + one folder per step (Lightning log dir: config.yaml,
                                        metrics.json, checkpoints/, log.txt)
    OUT/runs/_pretrain/<key>/seed<k>/   pretraining shared by the rows (and by music and control runs)
    OUT/results.md, results.csv, plots/, interpretation/, report/index.html

Resumable: a run whose ``status.json`` says ``done`` is not redone (``--redo ROW`` forces it); a run killed
midway (status ``running`` or missing) redoes its unfinished steps, resuming each from its ``last.ckpt``
when there is one (from scratch if that fails). Failed runs are retried on the next call.

``--jobs N`` (the quick profile: 2) runs N runs at a time, each worker with cores/N threads (small models use
two single-thread processes far better than one two-thread one); the data cache is prepared once before, and
runs that share a pretraining wait for the one that runs it.

Each step runs in its own subprocess (``python -m chanmusic.runner.compare --worker JOB``, which calls the same
``LightningCLI`` as ``chanmusic fit`` then ``chanmusic test`` in one process, so the libraries are imported
once per step), so a crash fails that run and the runner goes on. ``status.json`` records the equivalent
``chanmusic fit|test`` command lines.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
DEFAULT_SPEC = EXPERIMENTS / "paper.yaml"
STATUS = "status.json"
# the Lightning entry points each kind of step runs, in order
STEP_COMMANDS = {"pretrain": ("fit",), "align": ("fit", "test"), "reconstruct": ("test", "predict")}


# ------------------------------------------------------------------------------------------------ spec
@dataclass
class Row:
    name: str
    label: str
    configs: list[str]
    section: str = "main"                     # "main" or "ablation"
    kind: str = "align"                       # "align" (fit + test) or "reconstruct" (test + predict, no training)
    pretrain: list[str] | None = None
    args: list[str] = field(default_factory=list)
    reconstruct: bool | None = None           # None: the profile's default
    control: bool = True
    interpret: bool = True
    paper: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict, section: str) -> "Row":
        if "name" not in d or "configs" not in d:
            raise ValueError(f"spec: every row needs name and configs, got {d}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", d["name"]):
            raise ValueError(f"spec: row name {d['name']!r} must be a plain folder name")
        kind = d.get("kind", "align")
        if kind not in STEP_COMMANDS or kind == "pretrain":
            raise ValueError(f"spec: row {d['name']}: kind must be align or reconstruct, got {kind!r}")
        return cls(name=d["name"], label=d.get("label", d["name"]), configs=list(d["configs"]), section=section, kind=kind,
                   pretrain=list(d["pretrain"]) if d.get("pretrain") else None,
                   args=[str(a) for a in d.get("args", [])], reconstruct=d.get("reconstruct"),
                   control=bool(d.get("control", True)), interpret=bool(d.get("interpret", True)),
                   paper={k: float(v) for k, v in (d.get("paper") or {}).items()})


@dataclass
class Spec:
    """The resolved comparison: rows + ablations, the chosen profile, paths. JSON-serialisable."""

    path: str
    title: str
    config_root: str
    profile_name: str
    profile: dict[str, Any]
    rows: list[Row]
    metrics: list[str]
    plot_metrics: list[str]
    ablation_metrics: list[str]
    pretrain_arg: str
    reconstruct: dict[str, Any] | None
    reference_row: str | None
    seeds: list[int]
    paper_source: str = ""
    extra_args: list[str] = field(default_factory=list)
    row_order: list[str] = field(default_factory=list)   # every row of the spec file, in order

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["rows"] = [r.__dict__ for r in self.rows]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Spec":
        d = dict(d)
        d["rows"] = [Row(**r) for r in d["rows"]]
        return cls(**d)

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def config_path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else Path(self.config_root) / p


def load_spec(path: str | Path = DEFAULT_SPEC, profile: str = "full", rows: list[str] | None = None,
              seeds: int | None = None, out: Path | None = None, extra_args: list[str] | None = None) -> Spec:
    """Read the spec YAML and resolve one profile (``{out}`` in profile strings becomes the output folder)."""
    path = Path(path).resolve()
    raw = yaml.safe_load(path.read_text())
    profiles = raw.get("profiles") or {}
    if profile not in profiles:
        raise ValueError(f"{path}: no profile {profile!r} (has {sorted(profiles)})")
    prof = _substitute(copy.deepcopy(profiles[profile]), {"out": str(out.resolve()) if out else "OUT"})
    all_rows = [Row.from_dict(d, "main") for d in raw.get("rows", [])] + \
               [Row.from_dict(d, "ablation") for d in raw.get("ablations", [])]
    names = [r.name for r in all_rows]
    order = list(names)
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate row names {sorted({n for n in names if names.count(n) > 1})}")
    if rows:
        unknown = [r for r in rows if r not in names]
        if unknown:
            raise ValueError(f"--rows: unknown {unknown}; the spec has {names}")
        all_rows = [r for r in all_rows if r.name in rows]
    n_seeds = int(seeds if seeds is not None else prof.get("seeds", 1))
    if n_seeds < 1:
        raise ValueError("--seeds must be at least 1")
    metrics = list(raw.get("metrics", ["id50", "song14", "genre10", "within_song"]))
    return Spec(
        path=str(path), title=raw.get("title", "comparison"),
        config_root=str((path.parent / raw.get("config_root", ".")).resolve()),
        profile_name=profile, profile=prof, rows=all_rows, metrics=metrics,
        plot_metrics=list(raw.get("plot_metrics", metrics)), ablation_metrics=list(raw.get("ablation_metrics", metrics)),
        pretrain_arg=raw.get("pretrain_arg", "model.init_args.init_encoder_from"),
        reconstruct=raw.get("reconstruct"), reference_row=raw.get("reference_row"),
        seeds=list(range(n_seeds)), paper_source=raw.get("paper_source", ""), extra_args=list(extra_args or []),
        row_order=order,
    )


def _substitute(obj: Any, values: dict[str, str]) -> Any:
    if isinstance(obj, str):
        for k, v in values.items():
            obj = obj.replace("{" + k + "}", v)
        return obj
    if isinstance(obj, dict):
        return {k: _substitute(v, values) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_substitute(v, values) for v in obj]
    return obj


def deep_merge(a: dict, b: dict) -> dict:
    """``b`` over ``a``, recursively for dicts (lists and scalars replaced)."""
    out = copy.deepcopy(a)
    for k, v in (b or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


# ------------------------------------------------------------------------------------------------ plan
@dataclass
class Step:
    """One subprocess: a Lightning ``fit`` (+ ``test``) with a YAML list and extra arguments."""

    name: str                  # "pretrain" | "align" | "reconstruct"
    configs: list[Path]
    args: list[str]
    set: dict[str, Any]        # written to a YAML after the configs
    commands: tuple[str, ...] = ("fit", "test")   # Lightning entry points, in order (fit, test, predict)


@dataclass
class RunPlan:
    row: Row
    seed: int
    control: bool
    dir: Path

    @property
    def label(self) -> str:
        return f"{self.row.name} seed{self.seed}{' control' if self.control else ''}"


def run_dir(out: Path, row: str, seed: int, control: bool) -> Path:
    return out / "runs" / row / f"seed{seed}{'-control' if control else ''}"


def pretrain_key(configs: list[str]) -> str:
    return "+".join(re.sub(r"[^A-Za-z0-9_.-]", "_", Path(c).with_suffix("").as_posix().replace("/", "-"))
                    for c in configs)


def pretrain_dir(out: Path, configs: list[str], seed: int) -> Path:
    return out / "runs" / "_pretrain" / pretrain_key(configs) / f"seed{seed}"


def plan_runs(spec: Spec, out: Path) -> list[RunPlan]:
    plans = []
    for row in spec.rows:
        for seed in spec.seeds:
            for control in ((False, True) if row.control else (False,)):
                plans.append(RunPlan(row, seed, control, run_dir(out, row.name, seed, control)))
    return plans


def _base_configs(spec: Spec) -> list[Path]:
    return [spec.config_path(c) for c in spec.profile.get("base", [])]


def run_overrides(spec: Spec, kind: str, stepdir: Path, seed: int, control: bool | None) -> dict:
    """The YAML written after a step's configs: profile settings, then this run's seed, folders, control."""
    s = deep_merge(spec.profile.get("set") or {}, spec.profile.get(f"{kind}_set") or {})
    logger = {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
              "init_args": {"save_dir": str(stepdir), "name": "", "version": ""}}
    mine: dict[str, Any] = {"seed_everything": int(seed),
                            "trainer": {"default_root_dir": str(stepdir), "logger": logger}}
    if control is not None:
        mine["data"] = {"control": "shift" if control else "none"}
    return deep_merge(s, mine)


def missing_configs(paths: list[Path]) -> list[Path]:
    return [p for p in paths if not p.is_file()]


def display_path(p: Path) -> str:
    """``p`` relative to the repository or the current folder when it is inside one (short error lines)."""
    for base in (EXPERIMENTS.parent, Path.cwd()):
        try:
            return Path(p).resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            continue
    return str(p)


# ------------------------------------------------------------------------------------------------ status
def read_status(d: Path) -> dict | None:
    p = Path(d) / STATUS
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a status half-written when the runner was killed: treat as missing


def write_status(d: Path, status: dict) -> None:
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / (STATUS + ".tmp")
    tmp.write_text(json.dumps(status, indent=2, default=str))
    os.replace(tmp, d / STATUS)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def first_line(text: str) -> str:
    for line in str(text).strip().splitlines():
        if line.strip():
            return line.strip()[:300]
    return "unknown error"


def error_from_log(log: Path, rc: int | None) -> str:
    """The most telling line of a crashed worker's log: the last exception line, else the last line."""
    try:
        lines = [l.rstrip() for l in log.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        lines = []
    exc = [l for l in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*", l)]
    if exc:
        return exc[-1][:300]
    tail = lines[-1][:300] if lines else ""
    return f"worker exited with code {rc}" + (f": {tail}" if tail else "")


# ------------------------------------------------------------------------------------------------ steps
def _cli_command(sub: str, configs: list[Path], args: list[str]) -> str:
    parts = ["chanmusic", sub] + [x for c in configs for x in ("--config", str(c))] + list(args)
    return " ".join(_quote(p) for p in parts)


def _quote(s: str) -> str:
    return s if re.fullmatch(r"[\w@%+=:,./-]+", s) else "'" + s.replace("'", "'\"'\"'") + "'"


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
        _wipe(stepdir, keep_log=True)
        result = _launch(step, stepdir, timeout_s, worker_cmd, threads)
    return result


def default_worker_cmd() -> list[str]:
    """The worker: this module in a fresh interpreter (``--worker JOB.json`` is appended)."""
    return [sys.executable, "-m", "chanmusic.runner.compare", "--worker"]


def _wipe(d: Path, keep_log: bool = False) -> None:
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
    fit_done = _read_json(stepdir / "fit_done.json")
    if fit_done and not (fit_done.get("checkpoint") and Path(fit_done["checkpoint"]).is_file()):
        (stepdir / "fit_done.json").unlink(missing_ok=True)
        fit_done = None
    last = stepdir / "checkpoints" / "last.ckpt"
    resume = None if fit_done else (str(last) if last.is_file() else None)
    if not fit_done and not resume:  # nothing to resume from: start clean (no stale metrics or events)
        _wipe(stepdir, keep_log=True)
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
        log.write(f"\n[compare] {_now()} step {step.name}: {'resume from ' + resume if resume else 'start'}\n")
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
    res = _read_json(stepdir / "result.json")
    if res is None:
        res = {"status": "failed", "error": error_from_log(stepdir / "log.txt", rc)}
    elif rc != 0 and res.get("status") == "done":
        res = {**res, "status": "failed", "error": error_from_log(stepdir / "log.txt", rc)}
    res["seconds"] = round(time.time() - t0, 1)
    res["cpu_s"] = round(cpu, 1)   # the worker's CPU time (its wall time depends on the machine's load)
    res["resumed"] = bool(resume)
    res.setdefault("commands", [_cli_command(c, configs, step.args) for c in step.commands])
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


def _read_json(p: Path) -> dict | None:
    try:
        return json.loads(Path(p).read_text())
    except (OSError, json.JSONDecodeError):
        return None


# ------------------------------------------------------------------------------------------------ worker
def worker(job_path: str) -> int:
    """Inside the subprocess: one LightningCLI (as ``chanmusic fit|test|predict`` builds it) running the job's
    commands in order; ``test`` / ``predict`` after ``fit`` use the checkpoint selected on validation."""
    import warnings

    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    job = json.loads(Path(job_path).read_text())
    d = Path(job["dir"])
    result: dict[str, Any] = {"status": "failed"}
    try:
        from chanmusic import cli as cli_mod

        if hasattr(cli_mod, "_setup_logging"):
            cli_mod._setup_logging()
        args = [x for c in job["configs"] for x in ("--config", c)] + list(job["args"])
        sys.argv = [sys.argv[0]]  # LightningCLI gets its arguments from `args` only
        cli = cli_mod.lightning_main(args, run=False)
        trainer, model, dm = cli.trainer, cli.model, cli.datamodule
        configs = [Path(c) for c in job["configs"]]
        todo = list(job.get("commands", ["fit", "test"]))
        commands, best = [], None
        if "fit" in todo:
            commands.append(_cli_command("fit", configs, job["args"]))
            fit_done = _read_json(d / "fit_done.json")
            if fit_done and fit_done.get("checkpoint") and Path(fit_done["checkpoint"]).is_file():
                best = fit_done["checkpoint"]
            else:
                trainer.fit(model, datamodule=dm, ckpt_path=job.get("resume"))
                best = _selected_checkpoint(trainer, d)
                (d / "fit_done.json").write_text(json.dumps({"checkpoint": best, "time": _now()}))
            result["checkpoint"] = best
        ckpt_args = ["--ckpt_path", best] if best else []
        if "test" in todo:
            commands.append(_cli_command("test", configs, job["args"] + ckpt_args))
            trainer.test(model, datamodule=dm, ckpt_path=best)
            metrics = Path(trainer.log_dir or d) / "metrics.json"
            if not metrics.is_file():
                raise RuntimeError(f"test wrote no metrics.json in {metrics.parent}")
            result["metrics"] = str(metrics)
        if "predict" in todo:
            extra = _reuse_ridge(model, Path(trainer.log_dir or d))
            commands.append(_cli_command("predict", configs, job["args"] + ckpt_args + extra))
            trainer.predict(model, datamodule=dm, ckpt_path=best, return_predictions=False)
        result.update(status="done", commands=commands)
        rc = 0
    except BaseException as e:  # noqa: BLE001 - the runner wants every failure as a result
        traceback.print_exc()
        result.update(status="failed", error=first_line(f"{type(e).__name__}: {e}") + _where(e))
        rc = 1
    (d / "result.json").write_text(json.dumps(result, indent=2))
    return rc


def _where(e: BaseException) -> str:
    """`` (at chanmusic/x.py:12 in f)``: the innermost frame of this repository's code in the traceback."""
    root = EXPERIMENTS.parent.resolve()
    here = None
    for fr in traceback.extract_tb(e.__traceback__):
        if fr.filename.startswith("<"):
            continue
        p = Path(fr.filename).resolve()
        if root in p.parents and ".venv" not in p.parts and p.name != "compare.py":
            here = f" (at {p.relative_to(root).as_posix()}:{fr.lineno} in {fr.name})"
    return here or ""


def _reuse_ridge(model, log_dir: Path) -> list[str]:
    """The reconstruction stage fits its ridge adapter at the start of test *and* of predict; when test has saved
    one (``ridge.safetensors``), predict loads it instead — what ``--model.init_args.ridge_path`` does."""
    hp = getattr(model, "hparams", None)
    ridge = log_dir / "ridge.safetensors"
    if hp is None or "ridge_path" not in hp or hp.get("ridge_path") or not ridge.is_file():
        return []
    hp["ridge_path"] = str(ridge)
    return ["--model.init_args.ridge_path", str(ridge)]


def _selected_checkpoint(trainer, d: Path) -> str | None:
    """The checkpoint selected on validation (ModelCheckpoint's best), else last.ckpt, else one saved now."""
    cb = getattr(trainer, "checkpoint_callback", None)
    best = getattr(cb, "best_model_path", "") if cb is not None else ""
    if best and Path(best).is_file():
        return str(Path(best).resolve())
    last = getattr(cb, "last_model_path", "") if cb is not None else ""
    if last and Path(last).is_file():
        return str(Path(last).resolve())
    path = d / "checkpoints" / "final.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(str(path))
    return str(path.resolve())


# ------------------------------------------------------------------------------------------------ runner
class Runner:
    """Runs the planned runs in order, skipping finished ones; prints one progress line per run."""

    def __init__(self, spec: Spec, out: Path, redo: set[str] | None = None, worker_cmd: list[str] | None = None,
                 printer=print, jobs: int = 1):
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
        h = hashlib.sha256()
        paths = [*_base_configs(self.spec), *(self.spec.config_path(c) for c in (row.pretrain or []) + row.configs)]
        for p in paths:
            h.update(str(p).encode())
            h.update(p.read_bytes() if p.is_file() else b"<missing>")
        h.update(json.dumps([row.args, self.spec.profile, self.spec.extra_args], sort_keys=True, default=str).encode())
        return h.hexdigest()[:16]

    def recon_enabled(self, row: Row) -> bool:
        """Row setting, else the profile's ``reconstruct``: true, false or ``main`` (main-table rows only)."""
        on = row.reconstruct
        if on is None:
            prof = self.spec.profile.get("reconstruct", True)
            on = row.section == "main" if prof == "main" else bool(prof)
        return bool(on) and bool(self.spec.reconstruct)

    def steps(self, plan: RunPlan, pretrain_ckpt: str | None) -> list[Step]:
        spec, row = self.spec, plan.row
        base = _base_configs(spec) + ([_defaults_yaml(self.out, spec)] if spec.profile.get("defaults") else [])
        args = list(row.args) + ([f"--{spec.pretrain_arg}", pretrain_ckpt] if pretrain_ckpt else []) + spec.extra_args
        main = Step(row.kind, base + [spec.config_path(c) for c in row.configs], args,
                    run_overrides(spec, row.kind, plan.dir / row.kind, plan.seed, plan.control),
                    STEP_COMMANDS[row.kind])
        steps = [main]
        if row.kind == "align" and self.recon_enabled(row):
            rc = spec.reconstruct or {}
            steps.append(Step("reconstruct", base + [spec.config_path(c) for c in rc.get("configs", [])],
                              list(spec.extra_args),
                              run_overrides(spec, "reconstruct", plan.dir / "reconstruct", plan.seed, plan.control),
                              tuple(rc.get("commands", STEP_COMMANDS["reconstruct"]))))
        return steps

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
        spec = self.spec
        base = _base_configs(spec) + ([_defaults_yaml(self.out, spec)] if spec.profile.get("defaults") else [])
        step = Step("pretrain", base + [spec.config_path(c) for c in row.pretrain], list(spec.extra_args),
                    run_overrides(spec, "pretrain", d / "pretrain", seed, None), commands=("fit",))
        write_status(d, {"status": "running", "configs": row.pretrain, "seed": seed, "started": _now()})
        self.print(f"[compare]   pretraining {pretrain_key(row.pretrain)} seed{seed} ...")
        res = run_step(step, d / "pretrain", self.timeout, self.worker_cmd, self.threads)
        st = {"status": res["status"], "configs": row.pretrain, "seed": seed, "checkpoint": res.get("checkpoint"),
              "error": res.get("error"), "seconds": res.get("seconds"), "cpu_s": res.get("cpu_s"),
              "commands": res.get("commands"), "finished": _now()}
        write_status(d, st)
        self._pretrain_attempted.add(str(d))
        return (res.get("checkpoint"), None) if res["status"] == "done" else (None, res.get("error"))

    # -- one run
    def run_one(self, plan: RunPlan) -> dict:
        st = read_status(plan.dir)
        fp = self.fingerprint(plan.row)
        if st and st.get("status") == "done":
            if st.get("fingerprint") != fp:
                st["note"] = "spec or YAML changed since this run finished; kept (use --redo to rerun)"
            st["skipped"] = True
            return st
        prev_steps = (st or {}).get("steps", {})
        status = {"row": plan.row.name, "label": plan.row.label, "section": plan.row.section, "seed": plan.seed,
                  "control": plan.control, "status": "running", "started": _now(), "fingerprint": fp,
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
            for step in self.steps(plan, ckpt):
                done = prev_steps.get(step.name, {})
                if not ran and done.get("status") == "done" and _step_outputs_exist(done):
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
                      seconds=round(time.time() - t0, 1), cpu_s=round(cpu, 1), finished=_now())
        write_status(plan.dir, status)
        return status

    def run_all(self, plans: list[RunPlan]) -> list[dict]:
        """Run ``plans`` (``jobs`` at a time); returns their statuses in plan order."""
        self._pretrain_attempted = set()
        for plan in plans:  # --redo: forget these rows' runs (their shared pretraining is kept)
            if plan.row.name in self.redo:
                _wipe(plan.dir)
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
        groups: dict[str, tuple[list[Path], dict]] = {}
        for plan in plans:
            steps = self.steps(plan, None)
            if plan.row.pretrain:
                base = _base_configs(self.spec) + ([_defaults_yaml(self.out, self.spec)] if self.spec.profile.get("defaults") else [])
                steps.append(Step("pretrain", base + [self.spec.config_path(c) for c in plan.row.pretrain], [],
                                  run_overrides(self.spec, "pretrain", plan.dir, plan.seed, None)))
            for step in steps:
                if missing_configs(step.configs):
                    continue
                data = data_settings(step.configs, (step.set or {}).get("data") or {}, self.spec.extra_args)
                data.pop("control", None)  # not part of the cache
                groups.setdefault(json.dumps(data, sort_keys=True, default=str), (step.configs, data))
        for i, (configs, data) in enumerate(groups.values()):
            d = self.out / "prepare"
            d.mkdir(parents=True, exist_ok=True)
            over = d / f"data{i}.yaml"
            over.write_text(yaml.safe_dump({"data": data}, sort_keys=False))
            cmd = [sys.executable, "-m", "chanmusic.cli", "prepare"] + \
                  [x for c in list(configs) + [over] for x in ("--config", str(c))] + \
                  [a for a in _data_args(self.spec.extra_args)]
            self.print(f"[compare] preparing the data cache {i + 1}/{len(groups)} (log: {d / f'data{i}.log'})")
            with (d / f"data{i}.log").open("a") as log:
                rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    env=dict(os.environ, PYTHONUNBUFFERED="1")).returncode
            if rc != 0:
                self.print(f"[compare]   prepare failed ({error_from_log(d / f'data{i}.log', rc)}); the runs will "
                           "report it")


def data_settings(configs: list[Path], data_set: dict, extra_args: list[str]) -> dict:
    """The ``data:`` section the CLI would see: the configs' in order, then ``data_set``, then ``--data.*`` args."""
    data: dict = {}
    for c in configs:
        try:
            d = yaml.safe_load(Path(c).read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(d, dict) and isinstance(d.get("data"), dict):
            data = deep_merge(data, d["data"])
    data = deep_merge(data, data_set)
    args = _data_args(extra_args)
    i = 0
    while i < len(args):
        key, val = args[i][len("--data."):], None
        if "=" in key:
            key, val = key.split("=", 1)
        elif i + 1 < len(args):
            val, i = args[i + 1], i + 1
        data[key] = yaml.safe_load(val) if val is not None else None
        i += 1
    return data


def _data_args(args: list[str]) -> list[str]:
    """The ``--data.*`` arguments (with their values) of an argument list."""
    out, i = [], 0
    while i < len(args):
        a = args[i]
        if a.startswith("--data."):
            out.append(a)
            if "=" not in a and i + 1 < len(args) and not args[i + 1].startswith("--"):
                out.append(args[i + 1])
                i += 1
        i += 1
    return out


def _defaults_yaml(out: Path, spec: Spec) -> Path:
    """The profile's ``defaults`` (placed before the row's configs) as a YAML file in OUT."""
    p = out / "profile_defaults.yaml"
    text = "# written by chanmusic compare: the profile's defaults\n" + yaml.safe_dump(spec.profile["defaults"], sort_keys=False)
    if not p.is_file() or p.read_text() != text:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return p


def _step_outputs_exist(res: dict) -> bool:
    return all(Path(res[k]).is_file() for k in ("metrics", "checkpoint") if res.get(k))


def merged_metrics(status: dict) -> dict:
    """Union of the steps' metrics.json (later steps win), as stored in a run's status."""
    merged: dict = {}
    for name in ("align", "reconstruct"):
        res = (status.get("steps") or {}).get(name) or {}
        if res.get("status") == "done" and res.get("metrics"):
            m = _read_json(Path(res["metrics"]))
            if m:
                merged.update({k: v for k, v in m.items() if isinstance(v, dict) and "mean" in v})
    return merged


def progress_line(i: int, n: int, plan: RunPlan, st: dict, dt: float, total: float) -> str:
    m = st.get("metrics") or {}
    what = " ".join(f"{k} {m[k]['mean']:.3f}" for k in ("id50", "song14", "within_song", "clap_score") if k in m)
    if st.get("skipped"):
        state = "done earlier, skipped" + (f" ({st['note']})" if st.get("note") else "")
    elif st["status"] == "done":
        state = f"done in {dt:.0f} s (cpu {st.get('cpu_s') or 0:.0f} s)"
    else:
        state = f"FAILED ({st.get('failed_step')}) in {dt:.0f} s: {st.get('error')}"
    return f"[compare] ({i}/{n}) {plan.label}: {state}{' — ' + what if what else ''}  [{total / 60:.1f} min]"


# ------------------------------------------------------------------------------------------------ main
def ensure_demo_data(spec: Spec, printer=print) -> None:
    dd = spec.profile.get("demo_data")
    if not dd:
        return
    root = Path(dd["root"])
    if not any(root.glob("song*_Imputed.mat")) or not (root / "chanmusic_demo.json").exists():
        from datamodules.synthetic import write_demo

        printer(f"[compare] writing synthetic NMED-T-format demo data to {root}")
        kw = {k: v for k, v in dd.items() if k != "root"}
        write_demo(root, **kw)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="chanmusic compare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Arguments after `--` are passed to every run (e.g. -- --data.root /data/NMED-T).")
    p.add_argument("--config", default=str(DEFAULT_SPEC), help="comparison spec (default experiments/paper.yaml)")
    p.add_argument("--quick", action="store_true", help="the quick profile (demo data, tiny models, ~15 min on 2 CPU cores)")
    p.add_argument("--profile", default=None, help="profile name from the spec (default: full; --quick = quick)")
    p.add_argument("--out", default=None, help="output folder (default compare_out/<profile>)")
    p.add_argument("--rows", default=None, help="comma-separated row names to run (default all)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the profile's)")
    p.add_argument("--redo", default="", help="comma-separated rows to rerun even if finished")
    p.add_argument("--jobs", type=int, default=None,
                   help="runs at a time (default: the profile's `jobs`, else 1); each worker gets cores/jobs threads")
    p.add_argument("--no-report", action="store_true", help="skip interpretation figures and the HTML report")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv), extra


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parse_args(argv)
    if args.worker:
        sys.exit(worker(args.worker))
    import signal

    # `kill RUNNER` ends the running step's worker too (it has its own process group; see _launch)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    profile = args.profile or ("quick" if args.quick else "full")
    out = Path(args.out or f"compare_out/{profile}").resolve()
    rows = [r for r in args.rows.split(",") if r] if args.rows else None
    spec = load_spec(args.config, profile, rows, args.seeds, out, extra)
    plans = plan_runs(spec, out)
    print(f"[compare] {spec.title}\n[compare] profile {profile}: {len(spec.rows)} rows x {len(spec.seeds)} seed(s) "
          f"-> {len(plans)} runs (with controls) in {out}")
    if args.dry_run:
        for p in plans:
            print(f"  {p.label}: {p.dir}")
        return
    out.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(out)
    try:
        _run(spec, out, plans, args)
    finally:
        lock.unlink(missing_ok=True)


def acquire_lock(out: Path) -> Path:
    """``OUT/.compare.lock`` with this process id: two runners on one folder would redo each other's runs."""
    lock = out / ".compare.lock"
    try:
        pid = int(lock.read_text().strip())
    except (OSError, ValueError):
        pid = None
    if pid and pid != os.getpid():
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False  # a runner that was killed: its lock is stale
        except PermissionError:
            alive = True
        if alive:
            raise SystemExit(f"[compare] {out} is in use by process {pid} (remove {lock} if that is wrong)")
    lock.write_text(str(os.getpid()))
    return lock


def _run(spec: Spec, out: Path, plans: list[RunPlan], args: argparse.Namespace) -> None:
    save_spec(spec, out)
    t0 = time.time()
    ensure_demo_data(spec)
    jobs = args.jobs if args.jobs is not None else int(spec.profile.get("jobs", 1) or 1)
    runner = Runner(spec, out, redo={r for r in args.redo.split(",") if r}, jobs=jobs)
    try:
        statuses = runner.run_all(plans)
    finally:
        kill_live_workers()
    n_failed = sum(s["status"] != "done" for s in statuses)
    print(f"[compare] runs finished in {(time.time() - t0) / 60:.1f} min ({n_failed} failed)")
    from chanmusic.report import report

    report.write_results(out)
    if not args.no_report:
        report.run_interpretation(out)
        index = report.build_report(out)
        print(f"[compare] report: {index}")
    print(f"[compare] table: {out / 'results.md'}; total {(time.time() - t0) / 60:.1f} min")


def save_spec(spec: Spec, out: Path) -> None:
    """OUT/spec.json: merged with an earlier one so rows run by earlier calls (other --rows) stay listed."""
    path = out / "spec.json"
    d = spec.to_json()
    old = _read_json(path)
    if old and old.get("profile_name") == spec.profile_name:
        names = {r["name"] for r in d["rows"]}
        rank = {n: i for i, n in enumerate(spec.row_order)}
        rows = d["rows"] + [r for r in old.get("rows", []) if r["name"] not in names]
        d["rows"] = sorted(rows, key=lambda r: rank.get(r["name"], len(rank)))
        d["seeds"] = sorted(set(d["seeds"]) | set(old.get("seeds", [])))
    path.write_text(json.dumps(d, indent=2, default=str))


if __name__ == "__main__":
    main()

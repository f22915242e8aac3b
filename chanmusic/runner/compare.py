"""``chanmusic compare``: the paper's comparison — every row and ablation, over seeds, each with its control.

    chanmusic compare --config experiments/paper.yaml [--quick | --profile NAME] [--out DIR] [--rows a,b]
                      [--seeds N] [--jobs N] [--executor local|slurm [--detach]] ... [-- EXTRA ARGS FOR EVERY RUN]
    chanmusic compare --status OUT

This file is the command line: the arguments, the output folder's lock, the demo data, then the table and the
report at the end. The runner itself is the package beside it (:mod:`chanmusic.runner`: spec, plan, sweep, execute,
engine, worker), the layout of the output folder :mod:`chanmusic.results.layout`; the README says how to use it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from chanmusic.core.options import StrictArgumentParser
from chanmusic.runner.execute import kill_live_workers
from chanmusic.runner.lock import acquire_lock
from chanmusic.runner.plan import RunPlan, plan_runs
from chanmusic.runner.spec import DEFAULT_SPEC, Spec, load_spec
from chanmusic.runner.status import save_spec
from chanmusic.runner.sweep import Runner


def ensure_demo_data(spec: Spec, printer: Callable[[str], None] = print) -> None:
    """Write the profile's synthetic demo data set (``demo_data:``) unless it is there already."""
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
    """The options, and the arguments after ``--`` (passed to every run)."""
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = StrictArgumentParser(prog="chanmusic compare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Arguments after `--` are passed to every run (e.g. -- --data.root /data/NMED-T).")
    p.add_argument("--config", default=str(DEFAULT_SPEC), help="comparison spec (default experiments/paper.yaml)")
    p.add_argument("--quick", action="store_true", help="the quick profile (demo data, tiny models, ~15 min on 2 CPU cores)")
    p.add_argument("--profile", default=None,
                   help="profile of the spec: demo (`make demo`), quick, full (default; --quick = quick)")
    p.add_argument("--out", default=None, help="output folder (default compare_out/<profile>)")
    p.add_argument("--rows", default=None, help="comma-separated row names to run (default: the profile's, else all)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the profile's)")
    p.add_argument("--redo", default="", help="comma-separated rows to rerun even if finished")
    p.add_argument("--jobs", type=int, default=None,
                   help="runs at a time (default: the profile's `jobs`, else 1); each worker gets cores/jobs threads")
    p.add_argument("--folds", default=None, help='folds, e.g. "subjects k=5" or "songs k=7" ("none": off; default: '
                   "the spec's)")
    p.add_argument("--no-report", action="store_true", help="skip interpretation figures and the HTML report")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan, parse every run's arguments and check the data roots, then exit")
    p.add_argument("--detach", action="store_true",
                   help="submit the whole plan as SLURM jobs with dependencies and return (needs --executor slurm)")
    p.add_argument("--status", default=None, metavar="OUT",
                   help="print where every run of the comparison in OUT stands (its SLURM jobs when detached) and exit")
    e = p.add_argument_group("engine (submitit; default: the spec's `executor:` section, else local)")
    e.add_argument("--executor", choices=("local", "slurm"), default=None, help="where each step runs")
    e.add_argument("--partition", default=None, help="SLURM partition")
    e.add_argument("--gpus-per-job", type=int, default=None,
                   help="GPUs per job (local: pinned per run; default 1 when several GPUs are visible)")
    e.add_argument("--time", type=int, default=None, dest="time_min", help="SLURM time limit per job, minutes")
    e.add_argument("--account", default=None, help="SLURM account")
    e.add_argument("--cpus-per-job", type=int, default=None, help="SLURM CPUs per job")
    return p.parse_args(argv), extra


def engine_flags(args: argparse.Namespace) -> dict:
    """The engine settings given as flags (None = not given: the spec's value stays)."""
    return {k: getattr(args, k) for k in ("executor", "partition", "gpus_per_job", "time_min", "account",
                                          "cpus_per_job")}


def main(argv: list[str] | None = None) -> None:
    """``chanmusic compare``: plan, run (resumably, under the folder's lock), then the table and report."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parse_args(argv)
    if args.status:
        print_status(Path(args.status).resolve())
        return
    import signal

    # `kill RUNNER` ends the running step's worker too (it has its own process group; see execute.py)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    profile = args.profile or ("quick" if args.quick else "full")
    out = Path(args.out or f"compare_out/{profile}").resolve()
    rows = [r for r in args.rows.split(",") if r] if args.rows else None
    spec = load_spec(args.config, profile, rows, args.seeds, out, extra, engine_flags(args), args.folds)
    plans = plan_runs(spec, out)
    folds = f" x {spec.folds['k']} folds" if spec.folds else ""
    print(f"[compare] {spec.title}\n[compare] profile {profile}: {len(spec.rows)} rows x {len(spec.seeds)} seed(s)"
          f"{folds} -> {len(plans)} runs (with controls) in {out}; executor {spec.engine['executor']}")
    if args.dry_run:
        from chanmusic.runner.dry_run import check_plan

        for p in plans:
            print(f"  {p.label}")
        demo = (spec.profile.get("demo_data") or {}).get("root")
        n_steps, n_roots = check_plan(spec, plans, str(demo) if demo else None)
        print(f"[compare] dry run: {n_steps} distinct steps parse; {n_roots} data root(s) checked")
        return
    out.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(out)
    try:
        from chanmusic.runner.detach import refuse_if_detached_live, submit_plan

        refuse_if_detached_live(out)
        if args.detach:
            Runner(spec, out)   # checks the engine (sbatch on PATH, a time limit)
            save_spec(spec, out)
            ensure_demo_data(spec)
            submit_plan(spec, out)
            return
        _run(spec, out, plans, args)
    finally:
        lock.release()


def print_status(out: Path) -> None:
    """``--status OUT``: one line per run, with its SLURM job and state when the comparison was detached."""
    from chanmusic.runner.detach import job_states, read_detached
    from chanmusic.runner.status import status_lines

    states = job_states(out)
    jobs = {label: f"SLURM job {jid}: {states.get(jid, '?')}" for label, jid in
            ((read_detached(out) or {}).get("runs") or {}).items()}
    print("\n".join(status_lines(out, jobs)))


def _run(spec: Spec, out: Path, plans: list[RunPlan], args: argparse.Namespace) -> None:
    jobs = args.jobs if args.jobs is not None else int(spec.profile.get("jobs", 1) or 1)
    runner = Runner(spec, out, redo={r for r in args.redo.split(",") if r}, jobs=jobs)  # checks the engine
    save_spec(spec, out)
    t0 = time.time()
    ensure_demo_data(spec)
    try:
        statuses = runner.run_all(plans)
    finally:
        kill_live_workers()
    n_failed = sum(s["status"] != "done" for s in statuses)
    print(f"[compare] runs finished in {(time.time() - t0) / 60:.1f} min ({n_failed} failed)")
    from chanmusic import report
    from chanmusic.report.console import summary

    index = None
    if args.no_report:
        report.write_results(out)
    else:
        report.run_interpretation(out, spec.profile.get("interpret"))   # the profile may name the rows
        index = report.build_report(out)   # writes results.md/csv and the plots too
    spec_json, results = report.collect(out)
    print("\n" + summary(out, spec_json, results, index))
    print(f"\n[compare] total {(time.time() - t0) / 60:.1f} min")
    if n_failed:   # a table with holes is not a finished comparison: say so in the exit code too
        from chanmusic.core.errors import RunsFailedError
        from chanmusic.runner.plan import display_path

        plan, first = next((p, s) for p, s in zip(plans, statuses) if s["status"] != "done")
        where = f" at {first['failed_step']}" if first.get("failed_step") else ""
        raise RunsFailedError(display_path(out), f"{n_failed} of {len(statuses)} runs failed (first: "
                              f"{plan.label}{where})",
                              f"see `chanmusic compare --status {display_path(out)}`; the finished runs and the "
                              "report are kept; fix the cause and rerun the same command (done runs are skipped)")


if __name__ == "__main__":
    main()

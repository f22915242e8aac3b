"""The worker: one step of a comparison run, in-process, in the subprocess the runner starts.

    python -m chanmusic.runner.worker --worker STEPDIR/job.json

It builds one ``LightningCLI`` the way ``chanmusic fit|test|predict`` does (so the libraries are imported once
per step) and runs the job's commands in order; ``test`` / ``predict`` after ``fit`` use the checkpoint of the
checkpoint rule (the last step of the budget, :mod:`chanmusic.results.checkpoint_rule`), whose step and rule go
into ``metrics.json`` (``"checkpoint"``). It writes ``fit_done.json`` once ``fit`` has finished (checkpoint, step,
rule; a resumed step skips ``fit``) and ``result.json`` (status,
checkpoint, metrics path, the equivalent ``chanmusic`` command lines, the error). A failure ends the log (after its
traceback) and fills ``result.json``'s ``error`` with the project's one line, ``chanmusic: error: <file/field>:
<what> — <fix>`` (:func:`worker_error_line`), which the runner's summary shows.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from chanmusic.results.checkpoint_rule import FIT_DONE, checkpoint_record
from chanmusic.results.metrics_file import METRICS_FILE, merge_metrics, read_json
from chanmusic.runner.plan import cli_command
from chanmusic.runner.spec import SOURCE_ROOT
from chanmusic.runner.status import first_line, now


def worker(job_path: str) -> int:
    """Inside the subprocess: one LightningCLI (as ``chanmusic fit|test|predict`` builds it) running the job's
    commands in order; ``test`` / ``predict`` after ``fit`` use the checkpoint rule's (the last step)."""
    import warnings

    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    job = json.loads(Path(job_path).read_text())
    d = Path(job["dir"])
    result: dict[str, Any] = {"status": "failed"}
    try:
        from chanmusic import cli as cli_mod
        from chanmusic.results.checkpoint_rule import selected_checkpoint

        if hasattr(cli_mod, "_setup_logging"):
            cli_mod._setup_logging()
        args = [x for c in job["configs"] for x in ("--config", c)] + list(job["args"])
        sys.argv = [sys.argv[0]]  # LightningCLI gets its arguments from `args` only
        cli = cli_mod.lightning_main(args, run=False, parser_kwargs={"exit_on_error": False})  # parse errors raise
        trainer, model, dm = cli.trainer, cli.model, cli.datamodule
        configs = [Path(c) for c in job["configs"]]
        todo = list(job.get("commands", ["fit", "test"]))
        commands, best, record = [], None, None
        if "fit" in todo:
            commands.append(cli_command("fit", configs, job["args"]))
            fit_done = read_json(d / FIT_DONE)
            if fit_done and fit_done.get("checkpoint") and Path(fit_done["checkpoint"]).is_file():
                best = fit_done["checkpoint"]
                record = {k: fit_done[k] for k in ("checkpoint", "step", "rule") if k in fit_done}
            else:
                trainer.fit(model, datamodule=dm, ckpt_path=job.get("resume"))
                best = selected_checkpoint(trainer, d)
                record = checkpoint_record(best, trainer.global_step)
                (d / FIT_DONE).write_text(json.dumps({**record, "time": now()}))
            result["checkpoint"] = best
        ckpt_args = ["--ckpt_path", best] if best else []
        if "test" in todo:
            commands.append(cli_command("test", configs, job["args"] + ckpt_args))
            trainer.test(model, datamodule=dm, ckpt_path=best)
            metrics = Path(trainer.log_dir or d) / METRICS_FILE
            if not metrics.is_file():
                raise RuntimeError(f"test wrote no metrics.json in {metrics.parent}")
            if record:  # the checkpoint rule's choice, beside the numbers it produced
                merge_metrics(metrics, {"checkpoint": record})
            result["metrics"] = str(metrics)
        if "predict" in todo:
            extra = reuse_ridge(model, Path(trainer.log_dir or d))
            commands.append(cli_command("predict", configs, job["args"] + ckpt_args + extra))
            trainer.predict(model, datamodule=dm, ckpt_path=best, return_predictions=False)
        result.update(status="done", commands=commands)
        rc = 0
    except BaseException as e:  # noqa: BLE001 - the runner wants every failure as a result
        traceback.print_exc()
        line = worker_error_line(e, d / "log.txt")
        print(line, file=sys.stderr, flush=True)
        result.update(status="failed", error=line)
        rc = 1
    (d / "result.json").write_text(json.dumps(result, indent=2))
    return rc


def worker_error_line(e: BaseException, log: Path) -> str:
    """The one line for a step that failed: ``chanmusic``'s own line for the project's errors (bad settings or
    data, a non-finite loss); for anything else ``chanmusic: error: <log>: <type>: <message> (at <our innermost
    frame>) — unexpected; ...`` pointing at the traceback the log holds (``--debug`` does not apply here)."""
    from chanmusic.core.errors import DASH, error_line, is_unexpected

    if not is_unexpected(e):  # the project's own line (or a parse / path / setting error's)
        return error_line(e)
    what = first_line(f"{type(e).__name__}: {e}")
    return (f"chanmusic: error: {log}: {what}{_where(e)} {DASH} unexpected; the traceback is above this line in "
            f"that log; rerun the same `chanmusic compare` to retry the step")


def _where(e: BaseException) -> str:
    """`` (at chanmusic/x.py:12 in f)``: the innermost frame of this repository's code in the traceback, the
    runner's own files (this package) aside."""
    root = SOURCE_ROOT
    runner = Path(__file__).resolve().parent
    here = None
    for fr in traceback.extract_tb(e.__traceback__):
        if fr.filename.startswith("<"):
            continue
        p = Path(fr.filename).resolve()
        if root in p.parents and ".venv" not in p.parts and p.parent != runner:
            here = f" (at {p.relative_to(root).as_posix()}:{fr.lineno} in {fr.name})"
    return here or ""


def reuse_ridge(model, log_dir: Path) -> list[str]:
    """The reconstruction stage fits its ridge adapter at the start of test *and* of predict; when test has saved
    one (``ridge.safetensors``), predict loads it instead — what ``--model.init_args.ridge_path`` does."""
    hp = getattr(model, "hparams", None)
    ridge = log_dir / "ridge.safetensors"
    if hp is None or "ridge_path" not in hp or hp.get("ridge_path") or not ridge.is_file():
        return []
    hp["ridge_path"] = str(ridge)
    return ["--model.init_args.ridge_path", str(ridge)]


def main(argv: list[str] | None = None) -> None:
    """``--worker JOB``: run the step that ``JOB`` (its ``job.json``) describes; the exit code is the step's."""
    p = argparse.ArgumentParser(prog="python -m chanmusic.runner.worker",
                                description="Run one step of a `chanmusic compare` run (started by the runner).")
    p.add_argument("--worker", required=True, metavar="JOB", help="the step's job.json")
    sys.exit(worker(p.parse_args(argv).worker))


if __name__ == "__main__":
    main()

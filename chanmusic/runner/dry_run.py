"""``compare --dry-run``: parse every run's arguments as its worker would, and check the data roots once.

Each distinct step (pretraining, the row's main step, reconstruction: its configs and arguments, the arguments
after ``--`` included) is parsed by the same command line the worker builds, without instantiating anything; then the
data roots the parsed steps name are checked once each (the folders exist and hold the dataset's files). A typo
(``--data.windw_s``) or a missing ``--data.root`` is then one line naming the run and the field, before any run
starts, instead of a plan that fails run by run.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from chanmusic.core.errors import InputError, error_line
from chanmusic.runner.plan import RunPlan, Step, pretrain_step, run_steps
from chanmusic.runner.spec import Spec

_PREFIX = "chanmusic: error: "


def _parse_only_cli():
    from chanmusic.cli import ChanMusicCLI

    class ParseOnly(ChanMusicCLI):
        """The worker's command line, parsed and checked but not instantiated."""

        def instantiate_classes(self) -> None:
            return None

    return ParseOnly


def parse_step(step: Step, tmp: Path) -> dict[str, Any]:
    """The ``data`` settings of ``step`` as its worker's command line parses them (raises on a bad argument)."""
    from chanmusic.lightning_cli import build_cli

    over = tmp / f"set_{abs(hash(yaml.safe_dump(step.set)))}.yaml"
    over.write_text(yaml.safe_dump(step.set, sort_keys=False))
    args = [x for c in [*step.configs, over] for x in ("--config", str(c))] + list(step.args)
    argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI takes its arguments from `args` only (as the worker)
    try:
        cli = build_cli(args, run=False, parser_kwargs={"exit_on_error": False}, cli_class=_parse_only_cli())
    finally:
        sys.argv = argv
    data = cli.config.get("data") or {}
    return dict(data.get("init_args", data))


def _steps(spec: Spec, tmp: Path, plan: RunPlan) -> list[Step]:
    pre = "PRETRAINED.ckpt" if plan.row.pretrain else None
    out = [pretrain_step(spec, tmp, plan.row, tmp / "pretrain", plan.seed)] if plan.row.pretrain else []
    return out + run_steps(spec, tmp, plan, pre)


def check_plan(spec: Spec, plans: list[RunPlan], demo_root: str | None = None) -> tuple[int, int]:
    """Parse every distinct step of ``plans`` and check each data root once; ``(steps parsed, roots checked)``.
    Raises :class:`InputError` naming the run, the step and the field. ``demo_root``: written at run time."""
    from datamodules.selection import input_files, resolve_sources

    seen: set[tuple] = set()
    roots: dict[str, tuple[RunPlan, Step, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="chanmusic-dry-") as t:
        tmp = Path(t)
        for plan in plans:
            for step in _steps(spec, tmp, plan):
                key = (step.name, tuple(map(str, step.configs)), tuple(step.args), plan.row.name)
                if key in seen:
                    continue
                seen.add(key)
                try:
                    data = parse_step(step, tmp)
                except SystemExit as e:  # jsonargparse's --help / usage exits
                    raise InputError(f"compare run {plan.label} ({step.name})", f"its arguments do not parse "
                                     f"(exit {e.code})", "fix the spec's configs or the arguments after --") from None
                except Exception as e:  # noqa: BLE001 - every parse error becomes the run's one line
                    raise _run_error(plan, step, e) from e
                roots.setdefault(repr((data.get("dataset"), data.get("root"), data.get("audio_root"))),
                                 (plan, step, data))
        for plan, step, data in roots.values():
            if demo_root and str(data.get("root")) == str(demo_root):
                continue
            if not data.get("root"):
                raise InputError(f"compare run {plan.label} ({step.name}): --data.root", "no data folder is set",
                                 "pass it after --, e.g. chanmusic compare ... -- --data.root /data/NMED-T")
            ds = data.get("dataset") or "nmed-t"
            datasets = [ds] if isinstance(ds, str) else list(ds)
            try:
                for src in resolve_sources(datasets, data["root"], data.get("audio_root")):
                    input_files(src)
            except Exception as e:  # noqa: BLE001
                raise _run_error(plan, step, e) from e
    return len(seen), len(roots)


def _run_error(plan: RunPlan, step: Step, exc: BaseException) -> InputError:
    text = error_line(exc)
    text = text[len(_PREFIX):] if text.startswith(_PREFIX) else text
    what, _, fix = text.partition(" — ")
    return InputError(f"compare run {plan.label} ({step.name})", what,
                      fix or "fix the spec's configs or the arguments after --")

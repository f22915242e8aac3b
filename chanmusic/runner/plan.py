"""The plan: which runs a spec asks for, where each lives in ``OUT``, and the steps (subprocesses) of each run.

A :class:`RunPlan` is one row × seed × (music | control); it runs as a list of :class:`Step` — the row's main
step (``align``: fit + test, or ``reconstruct``: test + predict), then the reconstruction step where enabled —
after the row's shared pretraining step, if it declares one. Each step's YAML list is the profile's base
configs, the profile's ``defaults``, the row's configs, then :func:`run_overrides` (seed, folders, control).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chanmusic.runner.spec import EXPERIMENTS, STEP_COMMANDS, Row, Spec, deep_merge


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


def base_configs(spec: Spec) -> list[Path]:
    """The profile's ``base`` configs (first in every step's YAML list)."""
    return [spec.config_path(c) for c in spec.profile.get("base", [])]


def _defaults_yaml(out: Path, spec: Spec) -> Path:
    """The profile's ``defaults`` (placed before the row's configs) as a YAML file in OUT."""
    p = out / "profile_defaults.yaml"
    text = "# written by chanmusic compare: the profile's defaults\n" + yaml.safe_dump(spec.profile["defaults"], sort_keys=False)
    if not p.is_file() or p.read_text() != text:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return p


def _step_base(spec: Spec, out: Path) -> list[Path]:
    """The base configs, then the profile's ``defaults`` (written to ``OUT/profile_defaults.yaml``) if any."""
    return base_configs(spec) + ([_defaults_yaml(out, spec)] if spec.profile.get("defaults") else [])


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


def recon_enabled(spec: Spec, row: Row) -> bool:
    """Row setting, else the profile's ``reconstruct``: true, false or ``main`` (main-table rows only)."""
    on = row.reconstruct
    if on is None:
        prof = spec.profile.get("reconstruct", True)
        on = row.section == "main" if prof == "main" else bool(prof)
    return bool(on) and bool(spec.reconstruct)


def run_steps(spec: Spec, out: Path, plan: RunPlan, pretrain_ckpt: str | None) -> list[Step]:
    """The steps of one run, in order (its shared pretraining aside; ``pretrain_ckpt`` is what it produced)."""
    row = plan.row
    base = _step_base(spec, out)
    args = list(row.args) + ([f"--{spec.pretrain_arg}", pretrain_ckpt] if pretrain_ckpt else []) + spec.extra_args
    main = Step(row.kind, base + [spec.config_path(c) for c in row.configs], args,
                run_overrides(spec, row.kind, plan.dir / row.kind, plan.seed, plan.control),
                STEP_COMMANDS[row.kind])
    steps = [main]
    if row.kind == "align" and recon_enabled(spec, row):
        rc = spec.reconstruct or {}
        steps.append(Step("reconstruct", base + [spec.config_path(c) for c in rc.get("configs", [])],
                          list(spec.extra_args),
                          run_overrides(spec, "reconstruct", plan.dir / "reconstruct", plan.seed, plan.control),
                          tuple(rc.get("commands", STEP_COMMANDS["reconstruct"]))))
    return steps


def pretrain_step(spec: Spec, out: Path, row: Row, stepdir: Path, seed: int) -> Step:
    """The row's pretraining step (``fit`` only) for ``seed``, with its Lightning folders in ``stepdir``."""
    return Step("pretrain", _step_base(spec, out) + [spec.config_path(c) for c in row.pretrain],
                list(spec.extra_args), run_overrides(spec, "pretrain", stepdir, seed, None),
                commands=STEP_COMMANDS["pretrain"])


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


def cli_command(sub: str, configs: list[Path], args: list[str]) -> str:
    """The ``chanmusic SUB --config ... ARGS`` command line equivalent to one Lightning entry point of a step."""
    parts = ["chanmusic", sub] + [x for c in configs for x in ("--config", str(c))] + list(args)
    return " ".join(_quote(p) for p in parts)


def _quote(s: str) -> str:
    return s if re.fullmatch(r"[\w@%+=:,./-]+", s) else "'" + s.replace("'", "'\"'\"'") + "'"

"""The plan: which runs a spec asks for, where each lives in ``OUT``, and the steps (subprocesses) of each run.

A :class:`RunPlan` is one row × (fold) × seed × (music | control), in ``OUT/runs/<row>/[fold<f>/]seed<k>/music``
or ``.../control`` (the layout of :mod:`chanmusic.results.layout`); it runs as a list of :class:`Step` — the row's
main step (``align``: fit + test, or ``reconstruct``: test + predict), then the reconstruction step where
enabled — after the row's shared pretraining step, if it declares one. Each step's YAML list is the profile's base
configs, the profile's ``defaults``, the row's configs, then :func:`run_overrides` (seed, folders, control).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chanmusic.results.layout import run_folder, step_folder
from chanmusic.runner.spec import SOURCE_ROOT, STEP_COMMANDS, Row, Spec, deep_merge


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
    fold: int | None = None

    @property
    def label(self) -> str:
        """``row[/fold<f>]/seed<k>/music|control``: the run's folder under ``OUT/runs``."""
        return "/".join([self.row.name] + ([f"fold{self.fold}"] if self.fold is not None else [])
                        + [f"seed{self.seed}", "control" if self.control else "music"])


def plan_runs(spec: Spec, out: Path) -> list[RunPlan]:
    plans = []
    folds = list(range(spec.folds["k"])) if spec.folds else [None]
    for row in spec.rows:
        for fold in folds:
            for seed in spec.seeds:
                for control in ((False, True) if row.control else (False,)):
                    plans.append(RunPlan(row, seed, control, run_folder(out, row.name, seed, control, fold), fold))
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
    """The YAML written after a step's configs: profile settings, then this run's seed, split seed, folders,
    control."""
    s = deep_merge(spec.profile.get("set") or {}, spec.profile.get(f"{kind}_set") or {})
    logger = {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
              "init_args": {"save_dir": str(stepdir), "name": "", "version": ""}}
    mine: dict[str, Any] = {"seed_everything": int(seed),
                            "trainer": {"default_root_dir": str(stepdir), "logger": logger},
                            # each seed its own test windows and control shifts (Spec.split_seed)
                            "data": {"split_seed": spec.split_seed(seed)}}
    if control is not None:
        mine["data"]["control"] = "shift" if control else "none"
    return deep_merge(s, mine)


def recon_enabled(spec: Spec, row: Row, control: bool = False) -> bool:
    """Row setting, else the profile's ``reconstruct``: true, false, ``main`` (main-table rows only) or a list of
    row names; for a control run also the profile's ``reconstruct_control`` (default true)."""
    on = row.reconstruct
    if on is None:
        prof = spec.profile.get("reconstruct", True)
        on = row.section == "main" if prof == "main" else (row.name in prof if isinstance(prof, list) else bool(prof))
    if control and not spec.profile.get("reconstruct_control", True):
        return False
    return bool(on) and bool(spec.reconstruct)


def fold_data(held_out: list[Any] | None, by: str = "subjects") -> dict:
    """The ``data:`` settings of one fold: leave these subjects (``split: subjects``) or songs (``split: songs``,
    new music) out."""
    if held_out is None:
        return {}
    if by == "songs":
        return {"data": {"split": "songs", "test_songs": [int(s) for s in held_out]}}
    return {"data": {"split": "subjects", "test_subjects": list(held_out)}}


def _fold_by(spec: Spec) -> str:
    return str((spec.folds or {}).get("by", "subjects"))


def run_steps(spec: Spec, out: Path, plan: RunPlan, pretrain_ckpt: str | None,
              test_subjects: list[Any] | None = None) -> list[Step]:
    """The steps of one run, in order (its shared pretraining aside; ``pretrain_ckpt`` is what it produced;
    ``test_subjects``: the subjects or songs the run's fold holds out)."""
    row = plan.row
    fold = fold_data(test_subjects, _fold_by(spec))
    base = _step_base(spec, out)
    args = list(row.args) + ([f"--{spec.pretrain_arg}", pretrain_ckpt] if pretrain_ckpt else []) + spec.extra_args
    main = Step(row.kind, base + [spec.config_path(c) for c in row.configs], args,
                deep_merge(deep_merge(run_overrides(spec, row.kind, step_folder(plan.dir, row.kind), plan.seed,
                                                    plan.control),
                                      (spec.profile.get("row_set") or {}).get(row.name) or {}), fold),
                STEP_COMMANDS[row.kind])
    steps = [main]
    if row.kind == "align" and recon_enabled(spec, row, plan.control):
        rc = spec.reconstruct or {}
        steps.append(Step("reconstruct", base + [spec.config_path(c) for c in rc.get("configs", [])],
                          list(spec.extra_args),
                          deep_merge(run_overrides(spec, "reconstruct", step_folder(plan.dir, "reconstruct"),
                                                   plan.seed, plan.control), fold),
                          tuple(rc.get("commands", STEP_COMMANDS["reconstruct"]))))
    return steps


def pretrain_step(spec: Spec, out: Path, row: Row, stepdir: Path, seed: int,
                  test_subjects: list[Any] | None = None) -> Step:
    """The row's pretraining step (``fit`` only) for ``seed`` (and fold), with its Lightning folders in ``stepdir``.
    The profile's ``pretrain_config_set`` ({first YAML of a pretraining list: settings}) goes after ``pretrain_set``
    (e.g. the full profile's 8-s windows for the channel-oriented pretraining only)."""
    own = (spec.profile.get("pretrain_config_set") or {}).get(row.pretrain[0]) or {}
    return Step("pretrain", _step_base(spec, out) + [spec.config_path(c) for c in row.pretrain],
                list(spec.extra_args), deep_merge(deep_merge(run_overrides(spec, "pretrain", stepdir, seed, None),
                                                             own), fold_data(test_subjects, _fold_by(spec))),
                commands=STEP_COMMANDS["pretrain"])


def missing_configs(paths: list[Path]) -> list[Path]:
    return [p for p in paths if not p.is_file()]


def display_path(p: Path) -> str:
    """``p`` relative to the repository or the current folder when it is inside one (short error lines)."""
    for base in (SOURCE_ROOT, Path.cwd()):
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

"""The cache pre-pass before parallel runs: build each distinct data cache once, with ``chanmusic prepare``.

Two workers preparing the same cache at the same time would overwrite each other's partial folder, so the
runner first groups the planned steps by the ``data:`` settings the CLI would see (:func:`data_settings`: the
configs' ``data:`` sections in order, then the step's overrides, then the ``--data.*`` arguments after ``--``)
and runs ``prepare`` once per group as a job of the engine (``submit``; by default a plain subprocess), logging
to ``OUT/prepare/data<i>/log.txt``. A failed prepare is only reported here: the runs that need that cache fail
with the reason.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import yaml

from chanmusic.runner.plan import Step, missing_configs
from chanmusic.runner.spec import deep_merge
from chanmusic.runner.status import error_from_log


Submit = Callable[[list, Path, str], tuple]   # (command, folder, name) -> (exit code, cpu s, error or None)


def prepare_caches(steps: list[Step], extra_args: list[str], out: Path, printer: Callable[[str], None] = print,
                   submit: Optional[Submit] = None) -> None:
    """Run ``chanmusic prepare`` once for each distinct data cache that ``steps`` use (steps whose configs are
    missing are left out: they fail on their own); ``extra_args`` are the arguments passed to every run;
    ``submit`` runs the command where the runs run (default: here, in a subprocess)."""
    groups: dict[str, tuple[list[Path], dict]] = {}
    for step in steps:
        if missing_configs(step.configs):
            continue
        data = data_settings(step.configs, (step.set or {}).get("data") or {}, extra_args)
        data.pop("control", None)  # not part of the cache
        data.pop("split_seed", None)  # nor the split (seeds of a comparison differ in it; docs/protocols.md)
        groups.setdefault(json.dumps(data, sort_keys=True, default=str), (step.configs, data))
    for i, (configs, data) in enumerate(groups.values()):
        d = out / "prepare" / f"data{i}"
        d.mkdir(parents=True, exist_ok=True)
        over = d / "data.yaml"
        over.write_text(yaml.safe_dump({"data": data}, sort_keys=False))
        cmd = [sys.executable, "-m", "chanmusic.cli", "prepare"] + \
              [x for c in list(configs) + [over] for x in ("--config", str(c))] + \
              [a for a in _data_args(extra_args)]
        printer(f"[compare] preparing the data cache {i + 1}/{len(groups)} (log: {d / 'log.txt'})")
        t0, cpu = time.time(), None
        if submit is None:
            with (d / "log.txt").open("a") as log:
                rc, error = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT,
                                           env=dict(os.environ, PYTHONUNBUFFERED="1")).returncode, None
        else:
            rc, cpu, error = submit(cmd, d, f"prepare{i}")
        if rc == 0:
            printer(f"[compare]   data cache ready in {time.time() - t0:.0f} s"
                    + (f" (cpu {cpu:.0f} s)" if cpu is not None else ""))
        else:
            printer(f"[compare]   prepare failed ({error or error_from_log(d / 'log.txt', rc)}); the runs will "
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

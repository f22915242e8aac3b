"""The compare progress estimate from the start: work units (epochs) of every planned step, pretraining included,
timed on the steps finished so far, so an estimate appears after the first step, not after the first run."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from chanmusic.runner.plan import RunPlan, Step, plan_runs
from chanmusic.runner.progress import Progress, step_units
from chanmusic.runner.spec import Row
from tooling.fake_runner import write_fake_spec


def test_step_units_read_the_epochs_as_the_cli_would(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("trainer: {max_epochs: 8}\n")
    b.write_text("model: {lr: 1}\n")
    assert step_units(Step("align", [a, b], [], {})) == 9                       # 8 epochs + its test
    assert step_units(Step("align", [a], [], {"trainer": {"max_epochs": 3}})) == 4
    assert step_units(Step("align", [a], ["--trainer.max_epochs", "50"], {})) == 51
    assert step_units(Step("pretrain", [b], [], {})) == 2                       # none says: 1 epoch
    assert step_units(Step("reconstruct", [a], [], {})) == 1                    # trains nothing


def test_estimate_comes_after_the_first_step_and_counts_pretraining(monkeypatch):
    from chanmusic.runner import progress as prog

    a, b = Row("a", "A", []), Row("b", "B", [])
    plans = [RunPlan(a, 0, False, Path("x")), RunPlan(a, 0, True, Path("y")), RunPlan(b, 0, False, Path("z"))]
    # a/music: pretraining 5 epochs (6 units) + align 3 epochs (4); a/control: align (4); b: align 9 epochs (10)
    units = {id(plans[0]): 10.0, id(plans[1]): 4.0, id(plans[2]): 10.0}
    now = [0.0]
    monkeypatch.setattr(prog.time, "time", lambda: now[0])
    p = Progress(plans, jobs=1, units=units)
    assert p.remaining(0.0) is None                       # nothing measured yet
    p.start(plans[0])
    now[0] = 30.0                                         # pretraining: 6 units in 30 s -> 5 s a unit
    line = p.step_done(plans[0], "pretrain", 6.0, 30.0)
    # left: a/music's align 4 + a/control 4 + b 10 = 18 units x 5 s (the old estimate had nothing before a run ended)
    assert line == "[compare]   a/seed0/music: pretrain done in 30 s  [30 s so far, ~1.5 min left]"
    now[0] = 50.0
    p.step_done(plans[0], "align", 4.0, 20.0)             # 10 units in 50 s
    run_line = p.finish(plans[0], {"status": "done", "cpu_s": 40, "metrics": {}})
    assert run_line.endswith("[50 s so far, ~70 s left]")  # 14 units x 5 s
    p.jobs = 2
    assert p.remaining(50.0) == pytest.approx(35.0)
    p.jobs = 1
    p.start(plans[1])                                     # a/control fails before any step: its 4 units are dropped
    p.finish(plans[1], {"status": "failed", "failed_step": "align", "error": "x"})
    assert p.remaining(50.0) == pytest.approx(50.0)


def _lines_of_a_run(tmp_path, monkeypatch) -> list[str]:
    from test_runner_engine import _run

    spec = write_fake_spec(tmp_path, rows=[{"name": "good", "label": "Good", "configs": ["good.yaml"]}],
                           ablations=[{"name": "pre", "label": "Pretrained", "pretrain": ["pre.yaml"],
                                       "configs": ["good.yaml"]}])
    for name, epochs in (("pre", 4), ("good", 2)):
        cfg = tmp_path / "cfg" / f"{name}.yaml"
        cfg.write_text(cfg.read_text() + yaml.safe_dump({"trainer": {"max_epochs": epochs}}))
    runner, lines = _run(spec, tmp_path / "out")
    runner.run_all(plan_runs(runner.spec, tmp_path / "out"))
    return lines


def test_compare_prints_an_estimate_after_its_first_step(tmp_path, monkeypatch):
    lines = _lines_of_a_run(tmp_path, monkeypatch)
    steps = [i for i, line in enumerate(lines) if re.match(r"\[compare\]   \S+: (align|pretrain) done in", line)]
    first_run = next(i for i, line in enumerate(lines) if re.match(r"\[compare\] \(1/", line))
    assert steps and steps[0] < first_run
    assert re.search(r"so far, ~\S+ (s|min) left\]$", lines[steps[0]]), lines[steps[0]]
    # 2 seeds x 2 rows x (music, control): 8 align steps; pretraining once per seed: 2; each with a line
    assert sum(" align done in " in line for line in lines) == 8
    assert sum(" pretrain done in " in line for line in lines) == 2

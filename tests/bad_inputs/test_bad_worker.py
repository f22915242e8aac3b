"""Issue 30: a failure inside a ``compare`` step's worker ends in the project's one line — last in the worker's
output (its ``log.txt``) and as the ``error`` of its ``result.json``, which the runner's summary shows — not in the
exception's own wording (``ValueError: ...``, ``SystemExit: 2``) with no field or fix."""
from __future__ import annotations

import json

import pytest

from chanmusic.runner.worker import worker
from tooling.cli_cases import STAGE


@pytest.mark.parametrize("bad, where", [
    (["--data.window_s", "-2"], "--data.window_s"),        # a setting the data module refuses
    (["--data.clip", "abc"], "--data.clip"),                # a parse error (jsonargparse)
    (["--data.root", "/nonexistent/chanmusic"], "/nonexistent/chanmusic"),
])
def test_worker_failure_is_the_projects_one_line(world, capsys, tmp_path, bad, where):
    step = tmp_path / "step"
    step.mkdir()
    configs = [STAGE[i + 1] for i in range(0, len(STAGE), 2)]
    args = [str(a) for a in world.args(runs=tmp_path / "runs")[len(STAGE):]] + bad
    (step / "job.json").write_text(json.dumps({"configs": configs, "args": args, "dir": str(step),
                                               "commands": ["fit", "test"], "resume": None}))
    capsys.readouterr()
    assert worker(str(step / "job.json")) == 1
    out = capsys.readouterr()
    last = [x for x in (out.out + out.err).splitlines() if x.strip()][-1]
    error = json.loads((step / "result.json").read_text())["error"]
    assert last == error, (last, error)
    assert error.startswith("chanmusic: error: ") and where in error and " — " in error, error
    assert "unexpected" not in error and "\n" not in error
    assert not list((tmp_path / "runs").rglob("*.ckpt"))


def test_an_unexpected_worker_error_points_at_its_log(tmp_path):
    from chanmusic.runner.worker import worker_error_line

    try:
        {}["missing"]
    except KeyError as e:
        line = worker_error_line(e, tmp_path / "log.txt")
    assert line.startswith(f"chanmusic: error: {tmp_path / 'log.txt'}: KeyError: 'missing'")
    assert " — unexpected; the traceback is above this line in that log" in line
    assert "--debug" not in line   # the worker's traceback is in its log already

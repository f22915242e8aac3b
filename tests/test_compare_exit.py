"""``chanmusic compare`` exits non-zero when a run failed: a table with holes is not a finished comparison.

Before this, the command printed "(N failed)" in its progress, wrote the report and exited 0, so a script or CI
job that ran it could not tell a complete comparison from one with failed rows. Driven through the real
command with the stand-in worker of ``tests/tooling/fake_runner.py`` (no training).
"""
from __future__ import annotations

import json

import pytest

from chanmusic.runner import sweep
from chanmusic.runner.status import read_status
from tooling.cli_cases import assert_refused, run
from tooling.fake_runner import worker_cmd, write_fake_spec


def _compare(tmp_path, capsys, rows=None):
    spec = write_fake_spec(tmp_path, rows=rows, ablations=[])
    return run(["compare", "--config", spec, "--profile", "quick", "--seeds", "1", "--out", tmp_path / "out"],
               capsys)


@pytest.fixture()
def fake_worker(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "default_worker_cmd", lambda: worker_cmd(tmp_path))
    monkeypatch.setattr(sweep.Runner, "prepare_caches", lambda self, plans: None)  # behaviour-only configs: no data


def test_failed_runs_exit_1_in_one_line_and_keep_the_finished_ones(tmp_path, capsys, fake_worker):
    code, err = _compare(tmp_path, capsys)   # rows: good, crash (its worker fails), missing (its YAML is absent)
    line = assert_refused(code, err, str(tmp_path / "out"), exit_code=1)
    assert "4 of 6 runs failed (first: crash/seed0/music at align)" in line, line
    assert "--status" in line and "rerun the same command" in line
    out = tmp_path / "out"
    assert read_status(out / "runs" / "good" / "seed0" / "music")["status"] == "done"     # kept
    assert (out / "results.md").is_file() and "Crashes" in (out / "results.md").read_text()  # report still written
    n_calls = len((out / "calls.jsonl").read_text().splitlines())
    code, err = _compare(tmp_path, capsys)    # the rerun skips what is done and fails again, the same way
    assert code == 1 and "4 of 6 runs failed" in err
    again = [json.loads(x)["dir"] for x in (out / "calls.jsonl").read_text().splitlines()[n_calls:]]
    assert again and all("/runs/crash/" in d for d in again)


def test_a_comparison_whose_runs_all_finish_exits_0(tmp_path, capsys, fake_worker):
    code, err = _compare(tmp_path, capsys, rows=[{"name": "good", "label": "Good", "configs": ["good.yaml"]}])
    assert code == 0, err[-2000:]
    assert "chanmusic: error" not in err

"""Fault injection (issue 30): SIGKILL a small ``compare`` at seeded points — in pretraining, in an alignment step
(fit + test), in reconstruction, before and after a step's files are written, and while the report is written —
rerun it, and require ``results.md`` / ``results.csv`` byte-identical to an uninterrupted run's.

The plan is the runner's own (``Runner``, ``plan_runs``, the report's ``write_results``) over the fake worker of
``tests/tooling/fake_runner.py`` (no training: seconds, not minutes); ``driver.py`` and ``killer_worker.py`` place
the kills. Kills inside a real ``fit --ckpt_path last`` are ``tests/test_resume.py``'s.
"""
from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tooling.fake_runner import write_fake_spec

HERE = Path(__file__).resolve().parent
ROWS = [{"name": "good", "label": "Good", "configs": ["good.yaml"]},
        {"name": "flat", "label": "Flat", "configs": ["flat.yaml"]}]
N_KILLS = 3  # seeded worker-call kill points, plus one in the report


def _drive(spec: Path, out: Path, *extra: str) -> int:
    p = subprocess.run([sys.executable, str(HERE / "driver.py"), str(spec), str(out), *extra],
                       capture_output=True, text=True, timeout=600)
    return p.returncode


def _results(out: Path) -> tuple[bytes, bytes]:
    return (out / "results.md").read_bytes(), (out / "results.csv").read_bytes()


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, tuple[bytes, bytes], int]:
    """(spec, the uninterrupted run's results.md / results.csv, its number of worker calls)."""
    tmp = tmp_path_factory.mktemp("faults")
    spec = write_fake_spec(tmp, rows=ROWS, profile={"seeds": 1})
    assert _drive(spec, tmp / "clean") == 0
    return spec, _results(tmp / "clean"), (tmp / "clean.calls").stat().st_size


@pytest.mark.slow
def test_killed_compare_reruns_to_identical_results(tmp_path, clean):
    spec, want, n_calls = clean
    t0 = time.monotonic()
    assert n_calls >= 6  # pretraining, align and reconstruct steps of music and control runs
    points = sorted(random.Random(30).sample(range(1, n_calls + 1), N_KILLS))
    tried = []
    for k in points:
        out = tmp_path / f"kill{k}"
        assert _drive(spec, out, "--kill-at", str(k)) == -9, f"kill point {k} was not reached"
        assert not (out / "results.csv").exists()
        assert _drive(spec, out) == 0, f"rerun after kill point {k} failed"
        assert _results(out) == want, f"rerun after kill point {k} differs"
        tried.append(k)
    out = tmp_path / "kill_report"
    assert _drive(spec, out, "--kill-in-report") == -9
    assert (out / "results.md").exists() and not (out / "results.csv").exists()
    assert _drive(spec, out) == 0 and _results(out) == want
    print(f"\n[faults] {n_calls} worker calls; killed at calls {tried} and in the report; "
          f"{len(tried) + 1} reruns byte-identical; {time.monotonic() - t0:.1f} s")


@pytest.mark.slow
def test_killed_worker_fails_its_run_in_one_line_and_a_rerun_is_identical(tmp_path, clean):
    """SIGKILL one step's worker alone (not the runner) at seeded calls: the runner goes on, records that run as
    failed with the project's one line (in its status, the step's log, ``compare --status`` and results.md), and
    a rerun finishes with results byte-identical to an uninterrupted run's."""
    import json

    from chanmusic.runner.status import status_lines

    spec, want, n_calls = clean
    t0 = time.monotonic()
    for k in sorted(random.Random(31).sample(range(1, n_calls + 1), 2)):
        out = tmp_path / f"worker{k}"
        assert _drive(spec, out, "--kill-worker-at", str(k)) == 0, "the runner stopped with its worker"
        failed = [st for p in out.rglob("status.json") if (st := json.loads(p.read_text()))["status"] == "failed"]
        assert failed, f"kill point {k}: no run recorded as failed"
        line = failed[0]["error"]
        assert line.startswith("chanmusic: error: step ") and "\n" not in line
        assert "its worker was killed by SIGKILL — rerun the same `chanmusic compare`" in line
        assert {st["error"] for st in failed} == {line}
        ends = [p for p in out.rglob("log.txt") if p.read_text().strip().splitlines()[-1] == line]
        assert len(ends) == 1, "the killed step's log does not end with the line"
        assert any(" failed " in s and s.endswith(line) for s in status_lines(out))
        assert line in (out / "results.md").read_text()
        assert _drive(spec, out) == 0, f"rerun after the worker kill at call {k} failed"
        assert _results(out) == want, f"rerun after the worker kill at call {k} differs"
    print(f"\n[faults] {n_calls} worker calls; a worker killed alone at 2 seeded calls; both reruns byte-identical; "
          f"{time.monotonic() - t0:.1f} s")

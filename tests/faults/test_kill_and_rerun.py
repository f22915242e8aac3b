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


@pytest.mark.slow
def test_killed_compare_reruns_to_identical_results(tmp_path):
    spec = write_fake_spec(tmp_path, rows=ROWS, profile={"seeds": 1})
    t0 = time.monotonic()
    assert _drive(spec, tmp_path / "clean") == 0
    want = _results(tmp_path / "clean")
    n_calls = (tmp_path / "clean.calls").stat().st_size
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

"""Fault injection (issue 30): the disk fills while ``chanmusic report`` writes ``results.md`` / ``results.csv``.

The fault is ``CHANMUSIC_FAULT_DISK_FULL_AFTER=N`` (:mod:`chanmusic.core.files`): the writes of the report fail with
``OSError(ENOSPC)`` once N bytes are written, the bytes that fit written first, as on a disk that fills. Required:
one line naming the file, exit 2, no half-written result file left behind, and a rerun on a disk with room writes
results byte-identical to the uninterrupted ones. (The disk filling while ``fit`` writes a checkpoint is
``tests/bad_inputs/test_disk_full_fit.py``: it needs the bad-input suite's fitted world.)
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tooling.cli_cases import assert_refused, run
from tooling.fake_runner import write_fake_spec

HERE = Path(__file__).resolve().parent
FAULT_DISK_FULL = "CHANMUSIC_FAULT_DISK_FULL_AFTER"   # chanmusic/core/files.py's test hook
ROWS = [{"name": "good", "label": "Good", "configs": ["good.yaml"]},
        {"name": "flat", "label": "Flat", "configs": ["flat.yaml"]}]


@pytest.mark.slow
def test_full_disk_while_the_report_is_written_is_one_line_and_a_rerun_recovers(tmp_path, capsys, monkeypatch):
    spec = write_fake_spec(tmp_path, rows=ROWS, profile={"seeds": 1})
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, str(HERE / "driver.py"), str(spec), str(out)], capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    md, csv = (out / "results.md").read_bytes(), (out / "results.csv").read_bytes()
    # the disk fills half-way through results.md, then half-way through results.csv (results.md written whole)
    for name, budget in (("results.md", len(md) // 2), ("results.csv", len(md) + len(csv) // 2)):
        (out / "results.md").unlink()
        (out / "results.csv").unlink()
        monkeypatch.setenv(FAULT_DISK_FULL, str(budget))
        code, err = run(["report", out], capsys)
        line = assert_refused(code, err, str(out / name))
        assert "no space left on device" in line and "rerun the same command" in line
        assert not (out / "results.csv").exists(), "a half-written results.csv was left"
        if name == "results.md":
            assert not (out / "results.md").exists(), "a half-written results.md was left"
        else:
            assert (out / "results.md").read_bytes() == md
        assert not list(out.glob(".*.tmp")), "the temporary file was left"
        monkeypatch.delenv(FAULT_DISK_FULL)
        code, err = run(["report", out], capsys)
        assert code == 0, err[-2000:]
        assert (out / "results.md").read_bytes() == md and (out / "results.csv").read_bytes() == csv

"""Fault injection (issue 30): ``chanmusic prepare`` SIGKILLed at seeded writes of its cache (``prepare_killer.py``),
then rerun: the rerun must build a cache whose files are byte-identical to an uninterrupted prepare's, and no
killed run may leave a cache that looks complete (a ``manifest.json`` outside ``<key>.partial``)."""
from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datamodules.synthetic import write_demo
from tooling.cli_cases import STAGE

HERE = Path(__file__).resolve().parent


def _cache_files(cache: Path) -> dict[str, bytes]:
    """The finished cache's data files (``manifest.json`` reduced to its checksums: it also holds times)."""
    (key,) = [p for p in cache.iterdir() if p.is_dir() and not p.name.endswith(".partial") and p.name[0] != "."]
    out = {p.name: p.read_bytes() for p in key.iterdir() if p.is_file() and p.name != "manifest.json"}
    out["checksums"] = json.dumps(json.loads((key / "manifest.json").read_text())["checksums"]).encode()
    return out


@pytest.mark.slow
def test_killed_prepare_reruns_to_an_identical_cache(tmp_path):
    root = write_demo(tmp_path / "data", seed=0, n_subjects=2, duration_s=12.0, songs=[0, 1])
    args = lambda cache: ["prepare", *STAGE, "--data.root", str(root), "--data.cache_dir", str(cache)]  # noqa: E731
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, str(HERE / "prepare_killer.py"), "0", str(tmp_path / "clean.calls"),
                        *args(tmp_path / "clean")], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    want = _cache_files(tmp_path / "clean")
    n_writes = (tmp_path / "clean.calls").stat().st_size
    assert n_writes >= 6
    points = sorted(set(random.Random(32).sample(range(1, n_writes), 3)) | {n_writes})  # the last: finishing
    for k in points:
        cache = tmp_path / f"cache{k}"
        p = subprocess.run([sys.executable, str(HERE / "prepare_killer.py"), str(k), str(tmp_path / f"{k}.calls"),
                            *args(cache)], capture_output=True, text=True, timeout=600)
        assert p.returncode == -9, f"kill point {k} was not reached: {p.stderr[-1000:]}"
        assert not [m for m in cache.glob("*/manifest.json") if not m.parent.name.endswith(".partial")]
        # The rerun is a subprocess like the clean prepare: same environment, same torch thread count (a
        # matrix product's low bits depend on it, so an in-process rerun can differ where pytest changed threads).
        p = subprocess.run([sys.executable, str(HERE / "prepare_killer.py"), "0", str(tmp_path / f"{k}.rerun"),
                            *args(cache)], capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
        assert _cache_files(cache) == want, f"the cache rebuilt after kill point {k} differs"
    print(f"\n[faults] prepare: {n_writes} cache writes; killed at writes {points}; {len(points)} reruns "
          f"byte-identical; "
          f"{time.monotonic() - t0:.1f} s")

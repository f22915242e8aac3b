"""Benchmark ``memory``: peak RSS and peak anonymous RSS of a full train/val/test pass in a fresh process, on the
1× and the 4× demo set, and their 4×/1× ratios (the anonymous RSS must stay flat as the data grows).

The pass runs in a child process, ``python -m benchmarks.bench_memory ROOT CACHE_DIR``, which prints one JSON line.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from benchmarks.common import BATCH_SIZE, ROOT, Context, Row, demo_data_settings


def _rss_pass(root: str, cache_dir: str) -> None:
    """Child process: one full pass over train/val/test; prints JSON with peak RSS and peak anonymous RSS."""
    from datamodules.datamodule import NMEDDataModule

    def status_kb(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    anon_kb = lambda: status_kb("RssAnon")  # noqa: E731
    peak_anon = [anon_kb()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak_anon[0] = max(peak_anon[0], anon_kb())
            time.sleep(0.005)

    # the demo's data settings, as the prepare benchmark built the cache with (other settings: another cache key)
    dm = NMEDDataModule(root, cache_dir=cache_dir, **{**demo_data_settings(), "batch_size": BATCH_SIZE})
    dm.setup("fit")
    base_rss = status_kb("VmRSS")
    base_anon = anon_kb()
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    n = 0
    for part in ("train", "val", "test"):
        for b in getattr(dm, f"{part}_dataloader")():
            n += len(b["eeg"])
    stop.set()
    th.join()
    peak_anon[0] = max(peak_anon[0], anon_kb())
    # VmHWM, not getrusage's ru_maxrss: on Linux the latter survives exec and starts at the parent's RSS
    print(json.dumps({"n": n, "base_rss_kb": base_rss, "peak_rss_kb": status_kb("VmHWM"),
                      "base_anon_kb": base_anon, "peak_anon_kb": peak_anon[0]}))


def memory_vs_data_size(ctx: Context) -> list[Row]:
    """Peak memory of a full data pass in a fresh process, 1× vs 4× data (EEG read through the memmap)."""
    rows, res = [], {}
    for name in ("1x", "4x"):
        s = ctx.sets[name]
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_memory", str(s.root), str(s.cache_dir)],
                             capture_output=True, text=True, cwd=ROOT, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"{name} pass failed: {out.stderr[-800:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        res[name] = r
        rows.append(Row("memory", f"{name}: peak RSS, full pass ({r['n']} windows, EEG {s.eeg_bytes / 2**20:.0f} MB)",
                        r["peak_rss_kb"] / 1024, "MB",
                        f"after setup {r['base_rss_kb'] / 1024:.0f} MB; includes memmapped EEG pages (page cache)"))
        rows.append(Row("memory", f"{name}: peak anonymous RSS, full pass", r["peak_anon_kb"] / 1024, "MB",
                        f"after setup {r['base_anon_kb'] / 1024:.0f} MB; the process's own memory"))
    a, b = res["1x"], res["4x"]
    data_ratio = ctx.sets["4x"].eeg_bytes / ctx.sets["1x"].eeg_bytes
    rows.append(Row("memory", "4x / 1x: EEG on disk", data_ratio, "x"))
    rows.append(Row("memory", "4x / 1x: peak RSS", b["peak_rss_kb"] / a["peak_rss_kb"], "x",
                    f"+{(b['peak_rss_kb'] - a['peak_rss_kb']) / 1024:.0f} MB"))
    rows.append(Row("memory", "4x / 1x: peak anonymous RSS", b["peak_anon_kb"] / a["peak_anon_kb"], "x",
                    f"+{(b['peak_anon_kb'] - a['peak_anon_kb']) / 1024:.0f} MB"))
    return rows


if __name__ == "__main__":
    _rss_pass(sys.argv[1], sys.argv[2])

"""Benchmark the cache's integrity checks: what the CRC-32 of every cache file costs when a cache is opened.

``PreparedCache.open`` verifies each file's size and CRC-32 against the manifest (once per process while the files
are unchanged). This measures that cost on the 4× demo cache (cold: first open in this process; warm: a second
open, served by the per-process memo), the raw CRC-32 throughput on 256 MiB in memory, and what the same
verification would cost for the full NMED-T cache at the measured speed.
"""
from __future__ import annotations

import os
import time
import zlib

from benchmarks.common import Context, Row

#: NMED-T, all of it: 10 songs x 20 subjects x ~270 s at 125 Hz x 125 channels x 4 bytes (+ mels, small)
NMEDT_EEG_BYTES = 10 * 20 * 270 * 125 * 125 * 4


def cache_integrity(ctx: Context) -> list[Row]:
    import datamodules.cache as cache_mod

    s = ctx.sets["4x"]
    path = next(p for p in s.cache_dir.iterdir() if p.is_dir() and (p / "manifest.json").exists())
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file() and f.name != "manifest.json")
    cache_mod._VERIFIED.clear()
    t0 = time.perf_counter()
    cache_mod.PreparedCache.open(path)
    cold = time.perf_counter() - t0
    verify_cold = cache_mod.last_verify_seconds
    t0 = time.perf_counter()
    cache_mod.PreparedCache.open(path)
    warm = time.perf_counter() - t0

    buf = os.urandom(256 << 20)
    t0 = time.perf_counter()
    zlib.crc32(buf)
    crc_gbs = len(buf) / (time.perf_counter() - t0) / 1e9
    return [
        Row("cache integrity", "4x: verify checksums at open", verify_cold, "s",
            f"{size / 2**20:.0f} MiB in {len(list(path.iterdir())) - 1} files: "
            f"{size / max(verify_cold, 1e-9) / 1e9:.2f} GB/s from disk/page cache; whole open {cold:.3f} s"),
        Row("cache integrity", "4x: open again (files unchanged: memo)", warm, "s", "no re-hash in the same process"),
        Row("cache integrity", "CRC-32 throughput (in memory)", crc_gbs, "GB/s", "zlib.crc32 on 256 MiB"),
        Row("cache integrity", "full NMED-T cache: estimated verify time", NMEDT_EEG_BYTES / 1e9 / crc_gbs, "s",
            f"{NMEDT_EEG_BYTES / 2**30:.1f} GiB of EEG at the in-memory rate (cold disk reads come on top)"),
    ]

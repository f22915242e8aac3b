"""Benchmark ``loader``: samples/s of the training loader on the 4× demo set, with 0, 2 and 4 workers, its
CPU-seconds per 1,000 windows, and a cProfile of the in-process pass (where a window's time goes).

Leaves ``ctx.facts["loader_samples_per_s_w{0,2,4}"]`` and ``ctx.facts["loader_cpu_s_per_window_w{0,2,4}"]`` for
the train-step benchmark, which also measures the in-process loader again right before each step
(:func:`in_process_rate`), so that a loader / step ratio compares two numbers taken under the same load.
"""
from __future__ import annotations

import cProfile
import io
import os
import pstats
import resource
import time

from benchmarks.common import Context, Row

WORKERS = (0, 2, 4)


def _cpu_s() -> float:
    """User + system CPU seconds of this process and its finished children (worker processes)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _pass(loader, budget_s: float = 2.0, max_epochs: int = 10) -> tuple[int, int, float, float]:
    """Windows, epochs, wall seconds, first-batch seconds: epoch 0 after its first batch, then whole epochs."""
    t0 = time.perf_counter()
    it = iter(loader)
    next(it)
    t_first = time.perf_counter() - t0
    n, epochs, t1 = 0, 0, time.perf_counter()
    while True:
        for b in it:
            n += len(b["eeg"])
        epochs += 1
        if time.perf_counter() - t1 >= budget_s or epochs >= max_epochs:
            break
        loader.sampler.set_epoch(epochs)
        it = iter(loader)
    return n, epochs, time.perf_counter() - t1, t_first


def in_process_rate(loader, budget_s: float = 1.0) -> tuple[float, float]:
    """``(windows per second, CPU-seconds per window)`` of whole epochs of an in-process (0-worker) loader, the
    first batch excluded; CPU-seconds are this process's (every thread of the batch gather included)."""
    c0 = time.process_time()
    n, _, wall, _ = _pass(loader, budget_s)
    return n / wall, (time.process_time() - c0) / max(n, 1)


def profile_loader(ctx: Context, top: int = 8) -> str:
    """cProfile of one in-process epoch of the training loader: the top functions by own time."""
    loader = ctx.datamodule("4x", num_workers=0).train_dataloader()
    prof = cProfile.Profile()
    prof.enable()
    for _ in loader:
        pass
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def loader_throughput(ctx: Context) -> list[Row]:
    """Samples/s of the training loader (4× set, batch 64) in-process and with 2 and 4 workers."""
    import torch

    rows, threads = [], torch.get_num_threads()
    for workers in WORKERS:
        loader = ctx.datamodule("4x", num_workers=workers).train_dataloader()
        c0 = _cpu_s()
        n, epochs, wall, t_first = _pass(loader)
        del loader  # workers exit: their CPU time is counted in RUSAGE_CHILDREN
        cpu = _cpu_s() - c0
        rate = n / wall
        ctx.facts[f"loader_samples_per_s_w{workers}"] = rate
        ctx.facts[f"loader_cpu_s_per_window_w{workers}"] = cpu / max(n, 1)
        gather = f"batch gather on {threads} thread(s)" if workers == 0 else "1 thread per worker"
        rows.append(Row("loader", f"train loader, {workers} workers", rate, "samples/s",
                        f"{n} windows over {epochs} epoch(s), {1000 * cpu / max(n, 1):.3f} CPU-s per 1,000 windows "
                        f"(incl. first batch and workers' start-up); start-up + first batch {t_first:.2f} s "
                        f"excluded from samples/s; {gather}; load average {os.getloadavg()[0]:.1f}"))
    text = profile_loader(ctx)
    ctx.facts["loader_profile"] = text
    head = [ln for ln in text.splitlines() if ln.strip()][:14]
    print("[bench] loader profile (0 workers, one epoch, by own time):\n" + "\n".join(head))
    return rows

"""Benchmark ``loader``: samples/s of the training loader on the 4× demo set, with 0 and with 2 workers.

Leaves ``ctx.facts["loader_samples_per_s_w0"]`` and ``["loader_samples_per_s_w2"]`` for the train-step benchmark.
"""
from __future__ import annotations

import time

from benchmarks.common import Context, Row


def loader_throughput(ctx: Context) -> list[Row]:
    """Samples/s of a full pass of the training loader (4× set, batch 64), in-process and with 2 workers."""
    rows = []
    for workers in (0, 2):
        dm = ctx.datamodule("4x", num_workers=workers)
        loader = dm.train_dataloader()
        t0 = time.perf_counter()
        it = iter(loader)
        next(it)
        t_first = time.perf_counter() - t0
        n, epochs, t1 = 0, 0, time.perf_counter()
        while True:  # the rest of epoch 0, then whole epochs until 2 s have passed
            for b in it:
                n += len(b["eeg"])
            epochs += 1
            if time.perf_counter() - t1 >= 2.0 or epochs >= 10:
                break
            loader.sampler.set_epoch(epochs)
            it = iter(loader)
        rate = n / (time.perf_counter() - t1)
        ctx.facts[f"loader_samples_per_s_w{workers}"] = rate
        rows.append(Row("loader", f"train loader, {workers} workers", rate, "samples/s",
                        f"{n} windows over {epochs} epoch(s); start-up + first batch {t_first:.2f} s excluded"))
        del it, loader
    return rows

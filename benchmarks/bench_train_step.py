"""Benchmark ``train step``: samples/s one alignment training step consumes, per encoder, and the loader's
margin over it (``loader samples/s ÷ step samples/s`` against ``RATIO_TARGET``).

Per encoder, the in-process loader (0 workers, the gather on this process's threads) is timed again right before
the step, so the wall-clock ratio compares two numbers taken back to back under the same load; the CPU ratio
(step CPU-seconds per sample ÷ loader CPU-seconds per window) does not depend on the load at all. The best
setting of ``bench_loader.loader_throughput`` (left in ``ctx.facts``; it runs first) is reported beside them.
"""
from __future__ import annotations

import os

from benchmarks.bench_loader import in_process_rate
from benchmarks.common import RATIO_TARGET, ROOT, Context, Row, time_train_steps

#: label -> (encoder YAML, module that must exist): every aligned row of the demo profile
TRAIN_ENCODERS = {
    "linear reference": (ROOT / "experiments/encoders/linear_reference.yaml", "encoders.linear_reference"),
    "LaBraM": (ROOT / "experiments/encoders/labram.yaml", "encoders.labram"),
    "channel-oriented": (ROOT / "experiments/encoders/channel_oriented.yaml", "encoders.channel_oriented"),
}


def train_step_consumption(ctx: Context) -> list[Row]:
    """Samples/s an alignment training step consumes (CPU, batch 64), and the loader's margin over it."""
    import importlib.util

    import torch

    rows = []
    best = max(ctx.facts.get(f"loader_samples_per_s_w{w}", 0.0) for w in (0, 2, 4))
    loader = ctx.datamodule("4x", num_workers=0).train_dataloader()  # as in bench_loader
    for label, (yaml_path, module) in TRAIN_ENCODERS.items():
        if not yaml_path.exists() or importlib.util.find_spec(module) is None:
            print(f"[bench] {label}: skipped ({yaml_path.name} or {module} not there yet)")
            rows.append(Row("train step", f"{label}: align step", None, "samples/s", "skipped: encoder not there yet"))
            continue
        model, batch = ctx.align_model(yaml_path)
        load_rate, load_cpu = in_process_rate(loader)
        rate, step_cpu = time_train_steps(model, batch)
        n_params = sum(p.numel() for p in model.parameters())
        rows.append(Row("train step", f"{label}: align step", rate, "samples/s",
                        f"{n_params / 1e6:.2f} M parameters, fp32, {torch.get_num_threads()} threads, "
                        f"not deterministic; "
                        f"{1000 * step_cpu:.2f} CPU-s per 1,000 samples; load average {os.getloadavg()[0]:.1f}"))
        ratio = max(load_rate, best) / rate
        rows.append(Row("train step", f"{label}: loader / step", ratio, "x",
                        f"in-process loader timed just before: {load_rate:,.0f} samples/s ({load_rate / rate:.1f}x); "
                        f"best loader setting {best:,.0f} samples/s; target {RATIO_TARGET:.0f}x",
                        target_met=ratio >= RATIO_TARGET))
        cpu_ratio = step_cpu / load_cpu
        rows.append(Row("train step", f"{label}: loader / step, CPU-seconds", cpu_ratio, "x",
                        f"step {1000 * step_cpu:.2f} vs loader {1000 * load_cpu:.3f} CPU-s per 1,000 samples "
                        f"(independent of the load); target {RATIO_TARGET:.0f}x", target_met=cpu_ratio >= RATIO_TARGET))
        del model, batch
    return rows

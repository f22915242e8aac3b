"""Benchmark ``train step``: samples/s one alignment training step consumes, per encoder, and the loader's
margin over it (``loader samples/s ÷ step samples/s`` against ``RATIO_TARGET``).

Reads the loader rates that ``bench_loader.loader_throughput`` left in ``ctx.facts``, so it runs after it.
"""
from __future__ import annotations

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
    loader = max(ctx.facts.get(f"loader_samples_per_s_w{w}", 0.0) for w in (0, 2, 4))
    for label, (yaml_path, module) in TRAIN_ENCODERS.items():
        if not yaml_path.exists() or importlib.util.find_spec(module) is None:
            print(f"[bench] {label}: skipped ({yaml_path.name} or {module} not there yet)")
            rows.append(Row("train step", f"{label}: align step", None, "samples/s", "skipped: encoder not there yet"))
            continue
        model, batch = ctx.align_model(yaml_path)
        rate = time_train_steps(model, batch)
        n_params = sum(p.numel() for p in model.parameters())
        rows.append(Row("train step", f"{label}: align step", rate, "samples/s",
                        f"{n_params / 1e6:.2f} M parameters, fp32, {torch.get_num_threads()} threads, not deterministic"))
        if loader:
            ratio = loader / rate
            verdict = "meets" if ratio >= RATIO_TARGET else "BELOW"
            rows.append(Row("train step", f"{label}: loader / step", ratio, "x",
                            f"{verdict} the {RATIO_TARGET:.0f}x target (best loader setting)"))
        del model, batch
    return rows

#!/usr/bin/env python
"""GPU run script (``make bench-gpu``): the channel-oriented encoder's fwd+bwd and an alignment training step in
bf16 with ``torch.compile`` on CUDA, at the paper's sizes, as % of the card's measured bf16 matmul peak.

    python benchmarks/gpu_bench.py [--out benchmarks/gpu_results.json] [--no-compile] [--tiny]

Settings (``/work/shared/reference/training.md``: D 512, depth 8, 16 heads, patch 50, 125 channels at 125 Hz):

- ``pretrain 8 s``: 8-s windows (1000 samples → 125 × 20 = 2,500 tokens), batch 60 (the pretraining batch);
- ``align 1 s``: 1-s windows (125 samples → 125 × 2 = 250 tokens), batch 500 (the alignment batch).

For each: encoder fwd+bwd tokens/s and its FLOP/s as a fraction of the bf16 matmul peak (a loop of 8192² bf16
``torch.mm`` measured in the same run), and for ``align 1 s`` a full alignment step (encoder, linear projection
to the 512-d CLAP space, symmetric InfoNCE against random targets, AdamW) in samples/s. FLOPs come from
``torch.utils.flop_counter`` on the eager model (it counts the CUDA SDPA kernels).

Without CUDA (CI, laptops) it runs the same code at tiny sizes in fp32 without compiling and marks the CUDA-only
rows skipped, so a test checks that the script starts; its numbers then mean nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: (label, n_times, batch, steps timed); 125 channels, 125 Hz, patch 50
PAPER = {"embed_dim": 512, "depth": 8, "num_heads": 16, "patch_size": 50}
SETTINGS = [("pretrain 8 s", 1000, 60, 10), ("align 1 s", 125, 500, 10)]
TINY = {"embed_dim": 32, "depth": 1, "num_heads": 2, "patch_size": 50}
TINY_SETTINGS = [("pretrain 8 s (tiny)", 200, 2, 1), ("align 1 s (tiny)", 125, 4, 1)]
CHANNELS, SFREQ, CLAP_DIM = 125, 125.0, 512


def matmul_peak(device: Any, dtype: Any, n: int, budget_s: float = 1.0) -> float:
    """FLOP/s of a loop of ``n × n`` ``torch.mm`` in ``dtype`` on ``device`` (2n³ each), synchronised."""
    import torch

    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    out = torch.mm(a, b)
    _sync(device)
    k, t0 = 0, time.perf_counter()
    while k < 3 or time.perf_counter() - t0 < budget_s:
        torch.mm(a, b, out=out)
        k += 1
    _sync(device)
    return k * 2 * n**3 / (time.perf_counter() - t0)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(step: Callable[[], Any], device: Any, steps: int, warmup: int) -> float:
    """Seconds per call of ``step`` (mean over ``steps`` after ``warmup`` calls, which also compile)."""
    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - t0) / steps


def _flops(step: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        step()
    return fc.get_total_flops()


def run(tiny: bool, compile_: bool) -> dict[str, Any]:
    """Every row as a dict; CUDA-only rows carry ``skipped`` when CUDA is absent."""
    import torch
    from torch.nn import functional as F

    from encoders.channel_oriented import ChannelOrientedEncoder

    cuda = torch.cuda.is_available() and not tiny
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    compile_ = compile_ and cuda
    size, settings = (PAPER, SETTINGS) if cuda else (TINY, TINY_SETTINGS)
    peak = matmul_peak(device, dtype, 8192 if cuda else 256, 1.0 if cuda else 0.1)
    out: dict[str, Any] = {"device": torch.cuda.get_device_name() if cuda else "cpu", "dtype": str(dtype),
                           "compile": compile_, "encoder": size, "matmul_peak_tflops": peak / 1e12, "rows": []}
    if not cuda:
        out["rows"].append({"setting": "bf16 + torch.compile at the paper's sizes",
                            "skipped": "needs CUDA (ran tiny fp32 sizes eagerly instead)"})
    torch.backends.cuda.matmul.allow_tf32 = True
    for label, n_times, batch, steps in settings:
        torch.manual_seed(0)
        enc = ChannelOrientedEncoder(CHANNELS, SFREQ, n_times, **size).to(device)
        proj = torch.nn.Linear(size["embed_dim"], CLAP_DIM).to(device)
        x = torch.randn(batch, CHANNELS, n_times, device=device)
        target = F.normalize(torch.randn(batch, CLAP_DIM, device=device), dim=-1)
        fwd = torch.compile(enc) if compile_ else enc
        tokens = batch * CHANNELS * (n_times // size["patch_size"])

        def enc_step() -> None:
            with torch.autocast(device.type, dtype=dtype, enabled=cuda):
                o = fwd(x)
                loss = o.pooled.float().sum() + o.tokens.float().sum()
            loss.backward()

        opt = torch.optim.AdamW(list(enc.parameters()) + list(proj.parameters()), lr=1e-4)

        def align_step() -> None:
            with torch.autocast(device.type, dtype=dtype, enabled=cuda):
                z = F.normalize(proj(fwd(x).pooled).float(), dim=-1)
                logits = z @ target.T / 0.07
                labels = torch.arange(batch, device=device)
                loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def eager_enc_step() -> None:
            with torch.autocast(device.type, dtype=dtype, enabled=cuda):
                o = enc(x)
                (o.pooled.float().sum() + o.tokens.float().sum()).backward()

        flops = _flops(eager_enc_step)
        s = _timed(enc_step, device, steps, warmup=3 if cuda else 1)
        row = {"setting": label, "n_times": n_times, "batch": batch, "tokens": tokens,
               "encoder_tokens_per_s": tokens / s, "encoder_samples_per_s": batch / s,
               "encoder_gflop_per_step": flops / 1e9, "encoder_pct_of_matmul_peak": 100 * flops / s / peak}
        if label.startswith("align"):
            s = _timed(align_step, device, steps, warmup=3 if cuda else 1)
            row["align_step_samples_per_s"] = batch / s
        if cuda:
            row["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
            torch.cuda.reset_peak_memory_stats()
        out["rows"].append(row)
        print(json.dumps(row), flush=True)
        del enc, proj, fwd, opt, x
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run, print and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "gpu_results.json"), help="JSON file to write")
    p.add_argument("--no-compile", action="store_true", help="run eagerly (no torch.compile)")
    p.add_argument("--tiny", action="store_true", help="tiny sizes in fp32 even on CUDA (a smoke test)")
    a = p.parse_args(argv)
    res = run(a.tiny, not a.no_compile)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"[gpu-bench] {res['device']}, {res['dtype']}, compile={res['compile']}, matmul peak "
          f"{res['matmul_peak_tflops']:.1f} TFLOP/s; wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

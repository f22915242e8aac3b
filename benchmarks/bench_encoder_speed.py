"""Benchmark ``encoder speed``: forward+backward tokens/s of the channel-oriented encoder beside braindecode's
``Labram`` at the same token count, width, depth and heads, and the achieved FLOP/s as a fraction of torch's
fp32 matmul peak measured in the same run (``benchmarks/README.md``, "Encoder speed", explains every choice).

It uses no demo data (random inputs); ``python benchmarks/run.py --only encoder_speed`` runs it alone, after the
driver has made the demo sets.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from benchmarks.common import Context, Row

#: (label, embed_dim, depth, num_heads, patch_size, batch, rounds); 125 channels, 2-s window at 125 Hz (250
#: samples). ``rounds`` timed fwd+bwd steps per model, alternating; the best counts. The D256 step takes ~6 s
#: (ours) and ~8-11 s (LaBraM) on 2 busy cores, so it gets one round, and the patch-50 setting (625 tokens, the
#: paper's patch) a small batch, to keep the benchmark near a minute.
SPEED_CONFIGS = [
    ("D64 depth2 patch125 (demo)", 64, 2, 4, 125, 32, 3),
    ("D256 depth4 patch125", 256, 4, 8, 125, 32, 1),
    ("D64 depth2 patch50 (paper patch)", 64, 2, 4, 50, 8, 2),
]
SPEED_CHANNELS, SPEED_SFREQ, SPEED_TIMES = 125, 125.0, 250
PEAK_FRACTION_TARGET = 0.60  # issue 31: >= 60 % of the same run's fp32 matmul peak at every size
LABRAM_RATIO_TARGET = 1.5  # issue 31: >= 1.5x braindecode LaBraM's tokens/s at equal tokens and width
PEAK_N = 2048


def _matmul_peak(n: int = PEAK_N, budget_s: float = 0.5, min_iters: int = 3) -> float:
    """FLOP/s of a loop of fp32 ``torch.mm(n×n, n×n)`` (2n³ FLOPs each) lasting ``budget_s`` at the current thread
    count: total FLOPs over the loop's time (not its fastest single mm, which would pick a ~15-ms quiet moment
    on a shared machine that a whole training step never gets)."""
    import torch

    g = torch.Generator().manual_seed(0)
    a, b, out = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g), torch.empty(n, n)
    torch.mm(a, b, out=out)  # warm-up
    k, t0 = 0, time.perf_counter()
    while k < min_iters or time.perf_counter() - t0 < budget_s:
        torch.mm(a, b, out=out)
        k += 1
    return k * 2 * n**3 / (time.perf_counter() - t0)


def _count_flops(step: Callable[[], Any]) -> int:
    """FLOPs of one call of ``step`` (``torch.utils.flop_counter.FlopCounterMode``). torch counts matmuls, convs
    and the CUDA SDPA kernels but not the CPU one (``_scaled_dot_product_flash_attention_for_cpu``); it is added
    here with the same convention torch uses for the others and that an explicit ``q@kᵀ``, ``A@v`` is counted
    with: forward 2 matmuls, backward 4."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def fwd(q, k, v, *_, out_shape=None, **__):  # shapes [B, H, L, E]
        b, h, sq, d = q
        return 2 * b * h * sq * k[-2] * (d + v[-1])

    def bwd(g, q, k, v, *_, out_shape=None, **__):
        b, h, sq, d = q
        return 4 * b * h * sq * k[-2] * (d + v[-1])

    aten, mapping = torch.ops.aten, {}
    for name, f in (("_scaled_dot_product_flash_attention_for_cpu", fwd),
                    ("_scaled_dot_product_flash_attention_for_cpu_backward", bwd)):
        if hasattr(aten, name):
            mapping[getattr(aten, name)] = f
    with FlopCounterMode(display=False, custom_mapping=mapping) as fc:
        step()
    return fc.get_total_flops()


def _speed_pair(D: int, depth: int, heads: int, patch: int, batch: int, rounds: int) -> dict[str, Any]:
    """Build ours and braindecode's LaBraM at the same width/depth/heads and token count; count FLOPs of one
    fwd+bwd (batch 2, scaled: every op is linear in batch); one untimed warm-up step each at ``batch // 4``
    (the first steps at a new size are slower); time ``rounds`` fwd+bwd steps of each at ``batch``, alternating
    the two models so that load from other work hits both alike."""
    import warnings

    import torch
    from braindecode.models import Labram
    from braindecode.models.labram import LABRAM_CHANNEL_ORDER

    from encoders.channel_oriented import ChannelOrientedEncoder

    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        ours = ChannelOrientedEncoder(SPEED_CHANNELS, SPEED_SFREQ, SPEED_TIMES, embed_dim=D, depth=depth,
                                      num_heads=heads, patch_size=patch).train()
        P = ours.n_patches
        n_tok = ours.n_tokens  # 125 channels × P patches
        # LaBraM's width is conv_out_channels × ceil(patch/8) (its temporal conv has stride 8): with its 8 channels,
        # patch = D samples gives width D; P patches per channel give the same token count as ours.
        lab = Labram(n_times=D * P, n_outputs=1, n_chans=SPEED_CHANNELS, sfreq=200.0, patch_size=D,
                     conv_out_channels=8, embed_dim=D, num_layers=depth, num_heads=heads).train()
    if lab.embed_dim != D:
        raise RuntimeError(f"LaBraM width {lab.embed_dim} != {D}")
    names = list(LABRAM_CHANNEL_ORDER[:SPEED_CHANNELS])
    g = torch.Generator().manual_seed(0)
    inputs = {"ours": torch.randn(batch, SPEED_CHANNELS, SPEED_TIMES, generator=g),
              "LaBraM": torch.randn(batch, SPEED_CHANNELS, D * P, generator=g)}

    def fwd_bwd(name: str, x) -> int:
        if name == "ours":
            ours.zero_grad(set_to_none=True)
            o = ours(x)
            pooled, tokens = o.pooled, o.tokens
        else:
            lab.zero_grad(set_to_none=True)
            o = lab(x, return_features=True, ch_names=names)
            pooled, tokens = o["cls_token"], o["features"]
        (pooled.sum() + tokens.sum()).backward()
        return tokens.shape[1]

    res: dict[str, Any] = {"n_tokens": n_tok, "batch": batch,
                           "params": {"ours": sum(p.numel() for p in ours.parameters()),
                                      "LaBraM": sum(p.numel() for p in lab.parameters())}}
    flops = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("ours", "LaBraM"):  # doubles as the warm-up step
            small = inputs[name][:2]
            seen = []
            flops[name] = _count_flops(lambda: seen.append(fwd_bwd(name, small))) * batch // 2
            if seen[0] != n_tok:
                raise RuntimeError(f"{name} made {seen[0]} tokens, expected {n_tok}")
            fwd_bwd(name, inputs[name][: max(2, batch // 4)])
        times: dict[str, list[float]] = {"ours": [], "LaBraM": []}
        for _ in range(rounds):
            for name in ("ours", "LaBraM"):
                t0 = time.perf_counter()
                fwd_bwd(name, inputs[name])
                times[name].append(time.perf_counter() - t0)
    res["flops"], res["times"] = flops, times
    return res


def encoder_speed(ctx: Context) -> list[Row]:
    """Forward+backward tokens/s of the channel-oriented encoder vs braindecode's LaBraM at the same token count,
    width, depth and heads, and achieved FLOP/s as a fraction of torch's fp32 matmul peak measured in this run."""
    import statistics

    import torch

    threads = torch.get_num_threads()
    peaks, pairs = [], []
    for cfg in SPEED_CONFIGS:  # the peak before each pair and at the end: the best of them is the peak
        peaks.append(_matmul_peak())
        pairs.append((cfg, _speed_pair(*cfg[1:])))
    peaks.append(_matmul_peak())
    peak = max(peaks)
    B = "encoder speed"
    rows = [Row(B, f"matmul peak: fp32 torch.mm {PEAK_N}x{PEAK_N}, {threads} threads", peak / 1e9, "GFLOP/s",
                "best of 0.5-s mm loops before each pair and at the end: "
                + ", ".join(f"{p / 1e9:.1f}" for p in peaks))]
    ctx.facts["matmul_peak_flops"] = peak
    for (label, *_), r in pairs:
        best = {k: min(v) for k, v in r["times"].items()}
        med = {k: statistics.median(v) for k, v in r["times"].items()}
        tok = r["batch"] * r["n_tokens"]
        rate = {k: tok / best[k] for k in best}
        frac = {k: r["flops"][k] / best[k] / peak for k in best}
        tag = f"{label}, {r['n_tokens']} tok, B{r['batch']}"
        for k, who in (("ours", "channel-oriented"), ("LaBraM", "LaBraM (braindecode)")):
            rows.append(Row(B, f"{tag}: {who}", rate[k], "tokens/s",
                            f"fwd+bwd {best[k] * 1e3:.0f} ms best / {med[k] * 1e3:.0f} ms median of "
                            f"{len(r['times'][k])}; {r['flops'][k] / 1e9:.1f} GFLOP/step; "
                            f"{r['params'][k] / 1e6:.2f} M params"))
        ratio = rate["ours"] / rate["LaBraM"]
        rows.append(Row(B, f"{tag}: ours / LaBraM tokens/s", ratio, "x",
                        f"target >= {LABRAM_RATIO_TARGET}x (same tokens and width)",
                        target_met=ratio >= LABRAM_RATIO_TARGET))
        rows.append(Row(B, f"{tag}: ours FLOP/s / matmul peak", 100 * frac["ours"], "% of peak",
                        f"{r['flops']['ours'] / best['ours'] / 1e9:.1f} GFLOP/s; target >= "
                        f"{PEAK_FRACTION_TARGET:.0%}", target_met=frac["ours"] >= PEAK_FRACTION_TARGET))
        rows.append(Row(B, f"{tag}: LaBraM FLOP/s / matmul peak", 100 * frac["LaBraM"], "% of peak",
                        f"{r['flops']['LaBraM'] / best['LaBraM'] / 1e9:.1f} GFLOP/s (for comparison)"))
        ctx.facts[f"encoder_speed[{label}]"] = {"tokens_per_s": rate, "peak_fraction": frac}
    return rows

#!/usr/bin/env python
"""chanmusic benchmarks (``make bench``): preparation speed, data loading vs. training, memory vs. data size.

    python benchmarks/run.py [--only NAME ...] [--work DIR] [--keep] [--out benchmarks/results.json]

Writes two demo sets (``datamodules.synthetic.write_demo``; the 4× set has 4× the subjects on the same songs),
prepares them, runs every registered benchmark, prints a table and writes ``benchmarks/results.json``
(git-ignored). About 3–4 minutes on 2 CPU cores (``encoder_speed`` alone is about a minute). See
``benchmarks/README.md`` for what each number means.

Adding a benchmark: write ``fn(ctx: Context) -> list[Row]`` and decorate it with ``@benchmark`` (or append it to
``BENCHMARKS``). ``ctx`` has the demo sets (``ctx.sets["1x"]``, ``ctx.sets["4x"]``), ``ctx.align_model(...)``
(an alignment model + one real batch from an encoder YAML, built through the CLI) and ``ctx.facts`` (numbers
earlier benchmarks left for later ones). A benchmark that cannot run (an encoder not written yet, a missing
optional package) returns a row with ``value=None`` and a note; an exception is caught and reported the same
way, so one benchmark never stops the others.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TQDM_DISABLE", "1")  # prepare's progress bars would flood the table
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: demo sizes: songs × subjects × seconds. 4× = four times the subjects (same songs, so the same music windows).
SONGS = [0, 1, 2, 3, 4]
DURATION_S = 60.0
SUBJECTS = {"1x": 2, "4x": 8}
BATCH_SIZE = 64
RATIO_TARGET = 20.0  # data loading must outpace what a training step consumes by this factor


@dataclass
class Row:
    benchmark: str
    metric: str
    value: float | None
    unit: str = ""
    note: str = ""
    target_met: bool | None = None  # for rows checked against a target; None = no target


@dataclass
class DemoSet:
    name: str
    root: Path
    cache_dir: Path
    eeg_hours: float
    n_windows: int = 0
    eeg_bytes: int = 0


@dataclass
class Context:
    work: Path
    sets: dict[str, DemoSet] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def datamodule(self, name: str = "1x", **kw):
        """A set-up ``NMEDDataModule`` on demo set ``name`` (its cache already prepared)."""
        from datamodules.datamodule import NMEDDataModule

        s = self.sets[name]
        dm = NMEDDataModule(str(s.root), cache_dir=str(s.cache_dir), **{"batch_size": BATCH_SIZE, **kw})
        dm.setup("fit")
        return dm

    def align_model(self, encoder_yaml: str | Path, name: str = "1x", extra: list[str] | None = None):
        """``(model, batch)``: the alignment stage configured by ``experiments/align/default.yaml`` + ``encoder_yaml``
        through the CLI (data facts linked), attached to its (unused) Trainer, and one real training batch."""
        from chanmusic.cli import lightning_main

        s = self.sets[name]
        args = ["--config", str(ROOT / "experiments/demo.yaml"), "--config", str(ROOT / "experiments/align/default.yaml"),
                "--config", str(encoder_yaml), "--data.root", str(s.root), "--data.cache_dir", str(s.cache_dir),
                "--data.batch_size", str(BATCH_SIZE), "--trainer.logger", "false", "--trainer.deterministic", "false",
                "--trainer.enable_checkpointing", "false", "--trainer.callbacks", "[]",
                "--trainer.default_root_dir", str(self.work / "runs"), *(extra or [])]
        with _quiet():
            cli = lightning_main(args, run=False)
        model, dm = cli.model, cli.datamodule
        model.trainer = cli.trainer  # single process: the stage's gather is the identity
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
        return model, batch


Benchmark = Callable[[Context], list[Row]]
BENCHMARKS: list[Benchmark] = []


def benchmark(fn: Benchmark) -> Benchmark:
    """Register ``fn`` (run in registration order; later ones may read ``ctx.facts`` of earlier ones)."""
    BENCHMARKS.append(fn)
    return fn


@contextlib.contextmanager
def _quiet():
    """Silence stdout/stderr and Lightning's info logging (banners, prepare's prints) while building things."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "chanmusic")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def time_train_steps(model, batch: dict[str, Any], budget_s: float = 3.0, min_steps: int = 2, max_steps: int = 20,
                     warmup: int = 1) -> float:
    """Samples per second of full alignment training steps (forward, InfoNCE, backward, AdamW) on one batch:
    ``warmup`` untimed steps, then timed steps until ``budget_s`` seconds (at least ``min_steps``)."""
    import torch

    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        loss, _ = model._step(batch, train=True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    n, t0 = 0, time.perf_counter()
    while n < max_steps and (n < min_steps or time.perf_counter() - t0 < budget_s):
        step()
        n += 1
    return n * len(batch["eeg"]) / (time.perf_counter() - t0)


# ---- demo data ------------------------------------------------------------------------------------
def make_sets(ctx: Context) -> list[Row]:
    """Write the 1× and 4× demo sets and prepare them in this process, timing prepare's two parts: the EEG part
    (read, filter, scale, cut windows, write the memmap: grows with hours of EEG) and the music part (load CLAP,
    embed and mel every distinct music window once: grows with minutes of distinct music, not with subjects).
    The 4× set has four times the subjects on the same songs, so its music part is the 1× one again."""
    import chanmusic.audio.audio as audio
    from chanmusic.cli import prepare_main
    from datamodules.synthetic import write_demo

    load_clap, marks = audio.load_clap, {}

    def timed_load_clap(*a, **kw):  # prepare calls it once, after the EEG part
        marks["music_start"] = time.perf_counter()
        return load_clap(*a, **kw)

    rows = []
    audio.load_clap = timed_load_clap
    try:
        for name, n_subjects in SUBJECTS.items():
            root, cache = ctx.work / name / "nmed-t", ctx.work / name / "cache"
            t0 = time.perf_counter()
            write_demo(root, seed=0, n_subjects=n_subjects, duration_s=DURATION_S, songs=SONGS)
            t_write = time.perf_counter() - t0
            t0 = time.perf_counter()
            with _quiet():
                prepare_main(["--config", str(ROOT / "experiments/demo.yaml"), "--data.root", str(root),
                              "--data.cache_dir", str(cache)])
            t_end = time.perf_counter()
            t_eeg, t_music = marks["music_start"] - t0, t_end - marks["music_start"]
            s = DemoSet(name, root, cache, n_subjects * len(SONGS) * DURATION_S / 3600)
            ctx.sets[name] = s
            dm = ctx.datamodule(name)
            s.n_windows = len(dm.cache.segments)
            s.eeg_bytes = (dm.cache_path() / "eeg.f32").stat().st_size
            music_min = len(SONGS) * DURATION_S / 60
            first = " (first call: imports)" if name == "1x" else ""
            rows.append(Row("prepare", f"{name}: wall time", t_end - t0, "s",
                            f"{s.eeg_hours * 60:.0f} min of EEG, {s.n_windows} windows, {len(dm.cache.music)} music "
                            f"windows; demo written in {t_write:.1f} s"))
            rows.append(Row("prepare", f"{name}: EEG part per hour of EEG{first}", t_eeg / s.eeg_hours, "s/h",
                            f"{t_eeg:.1f} s: read .mat, preprocess, write memmap"))
            rows.append(Row("prepare", f"{name}: music part per minute of music", t_music / music_min, "s/min",
                            f"{t_music:.1f} s: load tiny random CLAP, embed + mel each distinct window once"))
    finally:
        audio.load_clap = load_clap
    return rows


# ---- benchmarks -----------------------------------------------------------------------------------
@benchmark
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


#: label -> (encoder YAML, module that must exist)
TRAIN_ENCODERS = {
    "linear reference": (ROOT / "experiments/encoders/linear_reference.yaml", "encoders.linear_reference"),
    "channel-oriented": (ROOT / "experiments/encoders/channel_oriented.yaml", "encoders.channel_oriented"),
}


@benchmark
def train_step_consumption(ctx: Context) -> list[Row]:
    """Samples/s an alignment training step consumes (CPU, batch 64), and the loader's margin over it."""
    import importlib.util

    import torch

    rows = []
    loader = max(ctx.facts.get("loader_samples_per_s_w0", 0.0), ctx.facts.get("loader_samples_per_s_w2", 0.0))
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


# ---- encoder speed: channel-oriented vs LaBraM, and FLOP/s vs torch's own matmul peak ------------------
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
PEAK_FRACTION_TARGET = 0.40  # the target: >= 40% of matmul peak at a realistic batch
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


@benchmark
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
        rows.append(Row(B, f"{tag}: ours / LaBraM tokens/s", ratio, "x", "target >= 1 (same tokens and width)",
                        target_met=ratio >= 1.0))
        rows.append(Row(B, f"{tag}: ours FLOP/s / matmul peak", 100 * frac["ours"], "% of peak",
                        f"{r['flops']['ours'] / best['ours'] / 1e9:.1f} GFLOP/s; target >= "
                        f"{PEAK_FRACTION_TARGET:.0%}", target_met=frac["ours"] >= PEAK_FRACTION_TARGET))
        rows.append(Row(B, f"{tag}: LaBraM FLOP/s / matmul peak", 100 * frac["LaBraM"], "% of peak",
                        f"{r['flops']['LaBraM'] / best['LaBraM'] / 1e9:.1f} GFLOP/s (for comparison)"))
        ctx.facts[f"encoder_speed[{label}]"] = {"tokens_per_s": rate, "peak_fraction": frac}
    return rows


_RSS_CHILD = "--rss-pass"


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

    dm = NMEDDataModule(root, cache_dir=cache_dir, batch_size=BATCH_SIZE)
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


@benchmark
def memory_vs_data_size(ctx: Context) -> list[Row]:
    """Peak memory of a full data pass in a fresh process, 1× vs 4× data (EEG read through the memmap)."""
    rows, res = [], {}
    for name in ("1x", "4x"):
        s = ctx.sets[name]
        out = subprocess.run([sys.executable, __file__, _RSS_CHILD, str(s.root), str(s.cache_dir)],
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


# ---- driver ---------------------------------------------------------------------------------------
def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def print_table(rows: list[Row]) -> None:
    cols = [("benchmark", [r.benchmark for r in rows]), ("metric", [r.metric for r in rows]),
            ("value", [_fmt(r.value) for r in rows]), ("unit", [r.unit for r in rows]),
            ("target", [{True: "met", False: "NOT met", None: ""}[r.target_met] for r in rows]),
            ("note", [r.note for r in rows])]
    widths = [max(len(h), *(len(x) for x in xs)) for h, xs in cols]
    line = lambda xs: "  ".join(str(x).ljust(w) if i != 2 else str(x).rjust(w) for i, (x, w) in enumerate(zip(xs, widths)))  # noqa: E731
    print(line([h for h, _ in cols]))
    print(line(["-" * w for w in widths]))
    for i in range(len(rows)):
        print(line([xs[i] for _, xs in cols]))


def _safe(fn: Callable[[Context], list[Row]], ctx: Context) -> tuple[list[Row], float]:
    t0 = time.perf_counter()
    try:
        rows = fn(ctx)
    except Exception as e:  # one broken benchmark must not hide the others
        rows = [Row(fn.__name__, "failed", None, "", f"{type(e).__name__}: {e}"[:300])]
        print(f"[bench] {fn.__name__} failed: {type(e).__name__}: {e}", file=sys.stderr)
    return rows, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == _RSS_CHILD:
        _rss_pass(argv[1], argv[2])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="*", help="run only these benchmarks (function names)")
    p.add_argument("--work", help="working folder (default: a temporary folder, removed afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the working folder")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"))
    a = p.parse_args(argv)

    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="chanmusic-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(work)
    chosen = [f for f in BENCHMARKS if not a.only or f.__name__ in a.only]
    t_start = time.perf_counter()
    load_start = list(os.getloadavg())
    print(f"[bench] load average {load_start[0]:.1f} on {os.cpu_count()} cores (other work on the machine slows "
          f"every number below)", flush=True)
    print(f"[bench] demo sets in {work} ({len(SONGS)} songs × {DURATION_S:.0f} s; subjects {SUBJECTS})", flush=True)
    rows, took = _safe(make_sets, ctx)
    timings = {"make_sets": took}
    if ctx.sets.keys() >= SUBJECTS.keys():
        for fn in chosen:
            print(f"[bench] {fn.__name__} …", flush=True)
            r, took = _safe(fn, ctx)
            rows += r
            timings[fn.__name__] = took
    print()
    print_table(rows)
    import torch

    out = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average_at_start": load_start, "load_average_at_end": list(os.getloadavg())},
        "config": {"songs": SONGS, "duration_s": DURATION_S, "subjects": SUBJECTS, "batch_size": BATCH_SIZE,
                   "ratio_target": RATIO_TARGET},
        "rows": [asdict(r) for r in rows],
        "seconds": {**timings, "total": time.perf_counter() - t_start},
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(f"\n[bench] wrote {a.out} in {out['seconds']['total']:.0f} s")
    if not a.work and not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

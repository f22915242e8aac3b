#!/usr/bin/env python
"""chanmusic benchmarks (``make bench``): preparation speed, data loading vs. training, memory vs. data size.

    python benchmarks/run.py [--only NAME ...] [--work DIR] [--keep] [--out benchmarks/results.json]

Writes two demo sets (``datamodules.synthetic.write_demo``; the 4× set has 4× the subjects on the same songs),
prepares them, runs every registered benchmark, prints a table and writes ``benchmarks/results.json``
(git-ignored). About 2–3 minutes on 2 CPU cores. See ``benchmarks/README.md`` for what each number means.

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
    import chanmusic.audio as audio
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
            ("value", [_fmt(r.value) for r in rows]), ("unit", [r.unit for r in rows]), ("note", [r.note for r in rows])]
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

"""Benchmark ``prepare``: write the 1× and 4× demo sets and prepare them, timing the EEG part and the music part.

It runs first, before every other benchmark, because it also makes the demo sets they use (``ctx.sets``).
"""
from __future__ import annotations

import time

from benchmarks.common import DURATION_S, ROOT, SONGS, SUBJECTS, Context, DemoSet, Row, quiet


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
            with quiet():
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

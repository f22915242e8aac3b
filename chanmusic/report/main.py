"""``chanmusic report RUN_DIR``: the comparison's tables, plots and a self-contained static HTML report.

    chanmusic report OUT [--interpret] [--audio-samples N]

Reads ``OUT/spec.json`` and every run's ``status.json`` / ``metrics.json`` (written by ``chanmusic compare``)
and writes:

- ``OUT/results.md`` and ``OUT/results.csv``: per row × metric the mean ± std over seeds, the 95% CI
  (t-distribution over seeds; with one seed, the run's bootstrap interval over test windows — flagged, it is not
  seed variability), n, chance, the no-music control, the gain over it (paired by seed) and the paper's number.
  Failed rows stay in the table with the error's first line.
- ``OUT/plots/*.png``: one bar chart per metric and the ablation chart.
- ``OUT/report/index.html`` + ``OUT/report/assets/``: the table, the plots, the scalp maps and dissimilarity
  matrices (``OUT/interpretation``, made by ``--interpret`` or by ``compare``), and audio players for true
  vs reconstructed clips (where the reconstruction step wrote ``predictions/manifest.json|csv``) with their
  mel spectrograms and CLAP scores. Everything is copied into the folder and linked relatively: open the file
  directly, no server and no network.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from chanmusic.report.html import build_report
from chanmusic.report.interpretation import draw_interpretation


def run_interpretation(out: str | Path, rows: Sequence[str] | None = None, timeout_s: float | None = 1800) -> bool:
    """Interpretation figures: the data computed by :mod:`chanmusic.evaluation.interpret` in a subprocess (model
    loading stays out of the runner's process), then drawn here (:mod:`chanmusic.report.interpretation`); True when
    the computation succeeded."""
    cmd = [sys.executable, "-m", "chanmusic.evaluation.interpret", str(out)] + \
          (["--rows", ",".join(rows)] if rows else [])
    log = Path(out) / "interpretation" / "log.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"[report] interpretation figures (scalp maps, dissimilarity matrices; log: {log}) ...")
    try:
        with log.open("w") as f:
            proc = subprocess.run(cmd, timeout=timeout_s, stdout=f, stderr=subprocess.STDOUT)
    except subprocess.TimeoutExpired:
        print("[report] interpretation timed out", file=sys.stderr)
        draw_interpretation(out)
        return False
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("[interpret]"):
            print(line)
    draw_interpretation(out)
    return proc.returncode == 0


def main(argv: list[str] | None = None) -> None:
    """The ``chanmusic report`` command line."""
    p = argparse.ArgumentParser(prog="chanmusic report", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a `chanmusic compare` output folder")
    p.add_argument("--interpret", action="store_true", help="(re)compute the scalp maps and dissimilarity matrices")
    p.add_argument("--audio-samples", type=int, default=3, help="clip pairs per row in the report")
    a = p.parse_args(argv)
    out = Path(a.run_dir)
    if a.interpret:
        run_interpretation(out)
    index = build_report(out, a.audio_samples)
    print(f"[report] {out / 'results.md'}\n[report] {index}")

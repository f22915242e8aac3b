"""Robustness outputs: the rows as CSV (and back), what the id50-vs-electrodes-removed figure shows, a plain-text
table."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from chanmusic.evaluation.robustness.evaluate import summarize
from chanmusic.evaluation.robustness.removal import MODES

CSV_FIELDS = ("encoder", "k", "mode", "seed", "id50_mean", "id50_std", "chance", "n", "n_kept", "run", "ckpt")


def write_csv(rows: Sequence[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in CSV_FIELDS})
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("k", "seed", "n", "n_kept"):
            r[k] = int(r[k])
        for k in ("id50_mean", "id50_std", "chance"):
            r[k] = float(r[k])
    return rows


def curves(rows: Sequence[dict]) -> dict:
    """What the id50-vs-electrodes-removed figure shows (drawn by :func:`chanmusic.report.plots.removal_curves`):
    ``summary`` (:func:`~chanmusic.evaluation.robustness.evaluate.summarize`), the ``encoders`` and ``modes`` in
    order, and ``n_channels``."""
    return {"summary": summarize(rows), "encoders": list(dict.fromkeys(r["encoder"] for r in rows)),
            "modes": [m for m in MODES if any(r["mode"] == m for r in rows)],
            "n_channels": max(r["n_kept"] + r["k"] for r in rows)}


def table(rows: Sequence[dict]) -> str:
    """Plain-text summary: id50 mean ± std over seeds per encoder, mode and k."""
    summ = summarize(rows)
    ks = sorted({k for (_, _, k) in summ})
    lines = ["encoder | mode | " + " | ".join(f"k={k}" for k in ks)]
    for enc in dict.fromkeys(r["encoder"] for r in rows):
        for mode in MODES:
            cells = [summ.get((enc, mode, k)) for k in ks]
            if any(cells):
                lines.append(f"{enc} | {mode} | " + " | ".join(
                    f"{c['mean']:.3f}±{c['std']:.3f}" if c else "—" for c in cells))
    chance = np.mean([s["chance"] for s in summ.values()])
    return "\n".join(lines) + f"\n(chance {chance:.3f})"


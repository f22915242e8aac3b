"""Robustness outputs: the rows as CSV (and back), the id50-vs-electrodes-removed plot, a plain-text table."""
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


def plot_curves(rows: Sequence[dict], path: Path, title: str = "") -> Path:
    """id50 vs electrodes removed, one line per encoder (mean ± std over seeds), one panel per mode."""
    from chanmusic.report.plots import _save  # sets the Agg backend before pyplot loads

    import matplotlib.pyplot as plt

    summ = summarize(rows)
    encoders = list(dict.fromkeys(r["encoder"] for r in rows))
    modes = [m for m in MODES if any(r["mode"] == m for r in rows)]
    n_ch = max(r["n_kept"] + r["k"] for r in rows)
    fig, axes = plt.subplots(1, len(modes), figsize=(4.6 * len(modes), 3.6), sharey=True, squeeze=False)
    for ax, mode in zip(axes[0], modes):
        for i, enc in enumerate(encoders):
            pts = sorted((k, s) for (e, m, k), s in summ.items() if e == enc and m == mode)
            if not pts:
                continue
            k = np.array([p[0] for p in pts])
            mean = np.array([p[1]["mean"] for p in pts])
            std = np.array([p[1]["std"] for p in pts])
            color = f"C{i}"
            ax.plot(k, mean, marker="o", ms=4, color=color, label=enc)
            ax.fill_between(k, mean - std, mean + std, color=color, alpha=0.2, lw=0)
        chance = np.mean([s["chance"] for (e, m, k), s in summ.items() if m == mode])
        ax.axhline(chance, color="k", ls="--", lw=1, label="chance")
        ax.set_xlabel(f"electrodes removed (of {n_ch})")
        ax.set_title(f"{mode} removal" if mode == "random" else "whole regions removed", fontsize=10)
        ax.spines[["top", "right"]].set_visible(False)
    n_seeds = max(s["n_seeds"] for s in summ.values())
    axes[0][0].set_ylabel(f"50-way identification\n(mean ± std over {n_seeds} seeds)")
    axes[0][0].legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


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


"""Figures for the comparison and its report (matplotlib, Agg; PNG files).

- :func:`metric_bars`: one metric across rows — ours with its 95% CI, the no-music control beside it,
  the paper's number as a marker, chance as a dashed line.
- :func:`ablation_chart`: the gain over the no-music control of each ablation beside the full model.
- :func:`attention_topomap`: CLS→channel attention as an MNE scalp map (``callbacks.attention``).
- :func:`dissimilarity_figure`: song-by-song dissimilarity (1 − cosine of per-song mean embeddings) of the
  EEG embeddings, beside the same matrix of the true CLAP embeddings of the music heard.
- :func:`mel_png`: a wav's log-mel spectrogram (the project's one mel) for the report's audio players.
- :func:`removal_curves`: ``chanmusic robustness``'s id50 vs electrodes removed.

Evaluation computes, this module draws: the scalp maps and dissimilarity matrices from what
:mod:`chanmusic.evaluation.interpret` saved (:mod:`chanmusic.report.interpretation`), the removal curves from
``chanmusic robustness``'s rows.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

OURS, CONTROL, PAPER = "#2b6cb0", "#a0aec0", "#c05621"


def _short(label: str, width: int = 18) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(label, width)[:3])


def metric_bars(metric: str, items: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Bar chart of one metric. ``items``: dicts with ``label``, ``mean``, ``ci95`` ((low, high) or None),
    ``control`` (mean or None), ``control_ci95``, ``paper`` (or None), ``chance`` (or None), ``failed`` (bool)."""
    n = len(items)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.15 * n + 1.5), 3.8))
    x = np.arange(n)
    w = 0.38
    for i, it in enumerate(items):
        if it.get("failed") or it.get("mean") is None:
            ax.text(i, 0.0, "failed" if it.get("failed") else "n/a", ha="center", va="bottom", fontsize=8,
                    color="#c53030", rotation=90)
            continue
        _bar(ax, i - w / 2, it["mean"], it.get("ci95"), w, OURS, "ours" if i == 0 else None)
        if it.get("control") is not None:
            _bar(ax, i + w / 2, it["control"], it.get("control_ci95"), w, CONTROL, None, hatch="//")
        if it.get("paper") is not None:
            ax.plot([i - w / 2], [it["paper"]], marker="D", color=PAPER, ms=6, ls="none", zorder=5)
    chances = [it.get("chance") for it in items if it.get("chance") is not None]
    if chances:
        ax.axhline(float(np.mean(chances)), color="k", ls="--", lw=1, zorder=1)
    handles = [plt.Rectangle((0, 0), 1, 1, color=OURS, label="ours (95% CI)"),
               plt.Rectangle((0, 0), 1, 1, facecolor=CONTROL, hatch="//", label="no-music control"),
               plt.Line2D([], [], marker="D", color=PAPER, ls="none", label="paper")]
    if chances:
        handles.append(plt.Line2D([], [], color="k", ls="--", label="chance"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", frameon=False, ncol=2)
    ax.set_xticks(x)
    ax.set_xticklabels([_short(it["label"]) for it in items], fontsize=7)
    ax.set_ylabel(metric)
    ax.set_title(title or metric, fontsize=10)
    top = [v for it in items for v in (it.get("mean"), it.get("paper"), it.get("control"),
                                       (it.get("ci95") or (None, None))[1]) if v is not None and np.isfinite(v)]
    if top:
        ax.set_ylim(min(0.0, min(top) * 1.1), max(top) * 1.35 + 1e-6)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _save(fig, path)


def _bar(ax, x, mean, ci95, w, color, label, hatch=None):
    yerr = None
    if ci95 is not None and all(c is not None and np.isfinite(c) for c in ci95):
        yerr = [[max(0.0, mean - ci95[0])], [max(0.0, ci95[1] - mean)]]
    ax.bar([x], [mean], w, yerr=yerr, color=color if not hatch else "white", edgecolor=color if hatch else None,
           hatch=hatch, capsize=3, label=label, zorder=3, error_kw={"lw": 1})


def ablation_chart(metrics: Sequence[str], items: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Gain over the no-music control per ablation (rows) and metric (panels). ``items``: dicts with
    ``label``, ``reference`` (bool, the full model), ``gains``: {metric: (gain, (low, high) | None) | None}."""
    k = max(1, len(metrics))
    fig, axes = plt.subplots(1, k, figsize=(3.2 * k, max(3.0, 0.45 * len(items) + 1.6)), sharey=True, squeeze=False)
    y = np.arange(len(items))[::-1]
    for ax, m in zip(axes[0], metrics):
        for yi, it in zip(y, items):
            g = (it.get("gains") or {}).get(m)
            if g is None or g[0] is None:
                ax.text(0, yi, "failed" if it.get("failed") else "n/a", va="center", fontsize=7, color="#c53030")
                continue
            gain, ci95 = g
            xerr = [[max(0.0, gain - ci95[0])], [max(0.0, ci95[1] - gain)]] if ci95 else None
            ax.barh([yi], [gain], xerr=xerr, color=OURS if it.get("reference") else "#63b3ed", capsize=3,
                    error_kw={"lw": 1})
        ax.axvline(0, color="k", lw=0.8)
        ax.set_title(f"{m}: gain over control", fontsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0][0].set_yticks(y)
    axes[0][0].set_yticklabels([_short(it["label"], 34) for it in items], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def removal_curves(summary: dict, encoders: Sequence[str], modes: Sequence[str], n_channels: int, path: str | Path,
                   title: str = "") -> Path:
    """id50 vs electrodes removed (``chanmusic robustness``), one line per encoder (mean ± std over seeds), one panel
    per mode. ``summary``: ``(encoder, mode, k) -> {"mean", "std", "n_seeds", "chance"}``
    (:func:`chanmusic.evaluation.robustness.outputs.curves` gives every argument)."""
    fig, axes = plt.subplots(1, len(modes), figsize=(4.6 * len(modes), 3.6), sharey=True, squeeze=False)
    for ax, mode in zip(axes[0], modes):
        for i, enc in enumerate(encoders):
            pts = sorted((k, s) for (e, m, k), s in summary.items() if e == enc and m == mode)
            if not pts:
                continue
            k = np.array([p[0] for p in pts])
            mean = np.array([p[1]["mean"] for p in pts])
            std = np.array([p[1]["std"] for p in pts])
            color = f"C{i}"
            ax.plot(k, mean, marker="o", ms=4, color=color, label=enc)
            ax.fill_between(k, mean - std, mean + std, color=color, alpha=0.2, lw=0)
        chance = np.mean([s["chance"] for (e, m, k), s in summary.items() if m == mode])
        ax.axhline(chance, color="k", ls="--", lw=1, label="chance")
        ax.set_xlabel(f"electrodes removed (of {n_channels})")
        ax.set_title(f"{mode} removal" if mode == "random" else "whole regions removed", fontsize=10)
        ax.spines[["top", "right"]].set_visible(False)
    n_seeds = max(s["n_seeds"] for s in summary.values())
    axes[0][0].set_ylabel(f"50-way identification\n(mean ± std over {n_seeds} seeds)")
    axes[0][0].legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def attention_topomap(values: Sequence[float], ch_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Scalp map of per-channel ``values`` ``[C]`` (montage order ``ch_names``) saved as a PNG."""
    from callbacks.attention import topomap_figure

    return _save(topomap_figure(values, ch_names, title), path)


def dissimilarity_figure(eeg_rdm: np.ndarray, names: Sequence[str], path: str | Path, title: str = "",
                         audio_rdm: np.ndarray | None = None) -> Path:
    """Song-by-song dissimilarity matrices ``[S, S]`` (the EEG's, and the music's beside it) labelled ``names``."""
    mats = [("EEG embeddings", eeg_rdm)] + ([("true CLAP (music heard)", audio_rdm)] if audio_rdm is not None else [])
    fig, axes = plt.subplots(1, len(mats), figsize=(4.6 * len(mats), 4.4), squeeze=False)
    for ax, (name, m) in zip(axes[0], mats):
        im = ax.imshow(m, cmap="magma", vmin=0.0, vmax=max(1e-6, float(np.max(m))))
        ax.set_xticks(range(len(names)))
        ax.set_yticks(range(len(names)))
        ax.set_xticklabels(names, rotation=90, fontsize=6)
        ax.set_yticklabels(names, fontsize=6)
        ax.set_title(f"{name}: 1 − cosine", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def mel_png(wav: Path, png: Path, title: str = "") -> Path | None:
    """Log-mel spectrogram image of a wav: the project's one mel (:func:`chanmusic.audio.log_mel`, AudioLDM's
    64 bands at 16 kHz, the representation SSIM/PSNR compare); a multichannel file is averaged to mono first.
    None when the file cannot be read (the player still says so)."""
    try:
        import soundfile as sf

        from chanmusic.audio import log_mel

        audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
        audio = audio.mean(1)
        mel = log_mel(audio, sr).numpy()  # [64, N]
    except Exception:  # noqa: BLE001 - an unreadable file gets no image, the player still says so
        return None
    fig, ax = plt.subplots(figsize=(3.6, 1.8))
    ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", extent=(0, len(audio) / sr, 0, mel.shape[0]))
    ax.set_xlabel("s", fontsize=7)
    ax.set_ylabel("mel", fontsize=7)
    ax.tick_params(labelsize=6)
    if title:
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png

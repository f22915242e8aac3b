"""Figures for the comparison and its report (matplotlib, Agg; PNG files).

- :func:`metric_bars`: one metric across rows — ours with its 95% CI, the no-music control beside it,
  the paper's number as a marker, chance as a dashed line.
- :func:`ablation_chart`: the gain over the no-music control of each ablation beside the full model.
- :func:`attention_topomap`: CLS→channel attention as an MNE scalp map (``callbacks.attention``).
- :func:`dissimilarity_figure`: song-by-song dissimilarity (1 − cosine of per-song mean embeddings) of the
  EEG embeddings, beside the same matrix of the true CLAP embeddings of the music heard.
- :func:`interpret_run` / ``python -m chanmusic.report.plots interpret OUT``: runs a trained model on its test
  windows and writes the scalp map and the dissimilarity matrix (``chanmusic compare`` calls it per row).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

OURS, CONTROL, PAPER = "#2b6cb0", "#a0aec0", "#c05621"


def _short(label: str, width: int = 18) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(label, width)[:3])


def metric_bars(metric: str, items: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Bar chart of one metric. ``items``: dicts with ``label``, ``mean``, ``ci`` ((low, high) or None),
    ``control`` (mean or None), ``control_ci``, ``paper`` (or None), ``chance`` (or None), ``failed`` (bool)."""
    n = len(items)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.15 * n + 1.5), 3.8))
    x = np.arange(n)
    w = 0.38
    for i, it in enumerate(items):
        if it.get("failed") or it.get("mean") is None:
            ax.text(i, 0.0, "failed" if it.get("failed") else "n/a", ha="center", va="bottom", fontsize=8,
                    color="#c53030", rotation=90)
            continue
        _bar(ax, i - w / 2, it["mean"], it.get("ci"), w, OURS, "ours" if i == 0 else None)
        if it.get("control") is not None:
            _bar(ax, i + w / 2, it["control"], it.get("control_ci"), w, CONTROL, None, hatch="//")
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
                                       (it.get("ci") or (None, None))[1]) if v is not None and np.isfinite(v)]
    if top:
        ax.set_ylim(min(0.0, min(top) * 1.1), max(top) * 1.35 + 1e-6)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _save(fig, path)


def _bar(ax, x, mean, ci, w, color, label, hatch=None):
    yerr = None
    if ci is not None and all(c is not None and np.isfinite(c) for c in ci):
        yerr = [[max(0.0, mean - ci[0])], [max(0.0, ci[1] - mean)]]
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
            gain, ci = g
            xerr = [[max(0.0, gain - ci[0])], [max(0.0, ci[1] - gain)]] if ci else None
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


def attention_topomap(values: Sequence[float], ch_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    from callbacks.attention import topomap_figure

    return _save(topomap_figure(values, ch_names, title), path)


def song_dissimilarity(emb: np.ndarray, song: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(songs, ``[S, S]`` 1 − cosine similarity of the per-song mean embeddings)."""
    emb = np.asarray(emb, dtype=np.float64)
    song = np.asarray(song)
    songs = np.unique(song)
    means = np.stack([emb[song == s].mean(0) for s in songs])
    means /= np.linalg.norm(means, axis=1, keepdims=True).clip(1e-12)
    return songs, 1.0 - means @ means.T


def rdm_correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman correlation of the upper triangles of two dissimilarity matrices (None if < 3 pairs)."""
    iu = np.triu_indices_from(a, k=1)
    if len(iu[0]) < 3:
        return None
    from scipy.stats import spearmanr

    r = spearmanr(a[iu], b[iu]).correlation
    return None if r is None or not np.isfinite(r) else float(r)


def dissimilarity_figure(eeg_rdm: np.ndarray, names: Sequence[str], path: str | Path, title: str = "",
                         audio_rdm: np.ndarray | None = None) -> Path:
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


# ------------------------------------------------------------------------------------------------ models
def load_trained(stepdir: str | Path, checkpoint: str | None = None):
    """(model, datamodule) of a finished Lightning run folder (its ``config.yaml`` + selected checkpoint)."""
    import torch

    from chanmusic.stages.encoder_init import safe_load, state_dict_of
    from chanmusic.cli import lightning_main

    stepdir = Path(stepdir)
    cfg = stepdir / "config.yaml"
    if not cfg.is_file():
        raise FileNotFoundError(f"{cfg}: no saved config (run not finished?)")
    if checkpoint is None:
        done = _read_json(stepdir / "fit_done.json") or {}
        checkpoint = done.get("checkpoint")
        if not checkpoint:
            cks = sorted((stepdir / "checkpoints").glob("*.ckpt"), key=lambda p: (p.name == "last.ckpt", p.name))
            checkpoint = str(cks[0]) if cks else None
    if not checkpoint or not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{stepdir}: no checkpoint")
    import yaml

    args = ["--config", str(cfg), "--trainer.logger", "false", "--trainer.callbacks", "[]",
            "--trainer.enable_checkpointing", "false"]
    init = ((yaml.safe_load(cfg.read_text()) or {}).get("model") or {}).get("init_args") or {}
    if init.get("init_encoder_from"):  # the checkpoint below holds every weight: don't need the pretraining file
        args += ["--model.init_args.init_encoder_from", "null"]
    sys.argv = [sys.argv[0]]  # LightningCLI gets its arguments from `args` only
    cli = lightning_main(args, run=False)
    model, dm = cli.model, cli.datamodule
    model.load_state_dict(state_dict_of(safe_load(checkpoint)), strict=True)
    model.eval()
    torch.set_grad_enabled(False)
    return model, dm


def collect_test_outputs(model, dm, max_windows: int | None = None) -> dict[str, np.ndarray]:
    """Run the encoder (and the stage's ``embed`` when it has one) on the test windows."""
    import torch

    dm.prepare_data()
    dm.setup("test")
    att, emb, pooled, clap, song = [], [], [], [], []
    seen = 0
    with torch.no_grad():
        for batch in dm.test_dataloader():
            out = model.encoder(batch["eeg"], batch["channel_mask"])
            if out.channel_attention is not None:
                att.append(out.channel_attention.float().cpu().numpy())
            pooled.append(out.pooled.float().cpu().numpy())
            if hasattr(model, "head"):
                emb.append(model.head(out).float().cpu().numpy())
            clap.append(batch["clap"].float().numpy())
            song.append(np.asarray(batch["song"]))
            seen += len(batch["eeg"])
            if max_windows and seen >= max_windows:
                break
    cat = lambda xs: np.concatenate(xs) if xs else None  # noqa: E731
    return {"channel_attention": cat(att), "embedding": cat(emb) if emb else cat(pooled), "clap": cat(clap),
            "song": cat(song)}


def interpret_run(stepdir: str | Path, outdir: str | Path, name: str, label: str = "",
                  max_windows: int | None = 2000) -> dict[str, Any]:
    """Scalp map + dissimilarity matrix of one trained run; returns a summary (paths relative to ``outdir``)."""
    from datamodules.songs import SONGS

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    model, dm = load_trained(stepdir)
    res = collect_test_outputs(model, dm, max_windows)
    summary: dict[str, Any] = {"row": name, "label": label, "n_windows": int(len(res["song"]))}
    att = res["channel_attention"]
    ch_names = list(dm.ch_names)
    if att is None:
        summary["attention"] = None
        summary["attention_note"] = "this encoder has no CLS→channel attention"
    elif att.shape[1] != len(ch_names):
        summary["attention"] = None
        summary["attention_note"] = f"channel_attention has {att.shape[1]} channels, the montage {len(ch_names)}"
    else:
        mean = att.mean(0)
        attention_topomap(mean, ch_names, outdir / f"{name}_attention.png",
                          f"{label or name}: CLS→channel attention\n(mean over {len(att)} test windows)")
        summary["attention"] = f"{name}_attention.png"
        top = np.argsort(mean)[::-1][:10]
        summary["top_channels"] = [[ch_names[i], float(mean[i])] for i in top]
        np.save(outdir / f"{name}_attention.npy", mean)
    songs, eeg_rdm = song_dissimilarity(res["embedding"], res["song"])
    _, audio_rdm = song_dissimilarity(res["clap"], res["song"])
    titles = {i: s.title for i, s in enumerate(SONGS)} if SONGS else {}
    names = [_song_name(s, titles) for s in songs]
    r = rdm_correlation(eeg_rdm, audio_rdm)
    dissimilarity_figure(eeg_rdm, names, outdir / f"{name}_dissimilarity.png",
                         f"{label or name}: song dissimilarity (test windows)"
                         + (f"; Spearman r(EEG, music) = {r:.2f}" if r is not None else ""), audio_rdm)
    summary.update(dissimilarity=f"{name}_dissimilarity.png", songs=names, eeg_rdm=eeg_rdm.round(4).tolist(),
                   audio_rdm=audio_rdm.round(4).tolist(), rdm_spearman=r)
    (outdir / f"{name}.json").write_text(json.dumps(summary, indent=2))
    return summary


def _song_name(s: int, titles: dict) -> str:
    t = titles.get(int(s))
    return f"{int(s)}: {t[:14]}" if t else str(int(s))


def _read_json(p: Path) -> dict | None:
    try:
        return json.loads(Path(p).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def interpret_comparison(out: str | Path, rows: Sequence[str] | None = None, max_windows: int | None = 2000) -> list[dict]:
    """For each row of ``OUT/spec.json`` with ``interpret`` and a finished music run: :func:`interpret_run`
    on its first finished seed's alignment step; failures are recorded in ``OUT/interpretation/<row>.json``."""
    out = Path(out)
    spec = json.loads((out / "spec.json").read_text())
    outdir = out / "interpretation"
    done = []
    for row in spec["rows"]:
        if not row.get("interpret", True) or (rows and row["name"] not in rows):
            continue
        stepdir = None
        for seed in spec["seeds"]:
            st = _read_json(out / "runs" / row["name"] / f"seed{seed}" / "status.json") or {}
            align = (st.get("steps") or {}).get("align") or {}
            if align.get("status") == "done" and align.get("dir"):
                stepdir = Path(align["dir"])
                break
        if stepdir is None:
            continue
        summary_path = outdir / f"{row['name']}.json"
        old = _read_json(summary_path)
        ckpt = (_read_json(stepdir / "fit_done.json") or {}).get("checkpoint")
        if old and old.get("checkpoint") == ckpt and not old.get("error"):
            done.append(old)
            continue
        try:
            s = interpret_run(stepdir, outdir, row["name"], row.get("label", row["name"]), max_windows)
            s["checkpoint"] = ckpt
        except Exception as e:  # noqa: BLE001 - one row's failure must not stop the others
            s = {"row": row["name"], "label": row.get("label"), "checkpoint": ckpt,
                 "error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"}
            print(f"[plots] interpretation of {row['name']} failed: {s['error']}", file=sys.stderr)
        outdir.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(s, indent=2))
        print(f"[plots] interpretation of {row['name']}: " + (s.get("error") or "done"))
        done.append(s)
    return done


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m chanmusic.report.plots",
                                description="Interpretation figures of a `chanmusic compare` output folder.")
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("interpret", help="scalp maps + dissimilarity matrices for every finished row")
    q.add_argument("out")
    q.add_argument("--rows", default=None)
    q.add_argument("--max-windows", type=int, default=2000)
    a = p.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    interpret_comparison(a.out, a.rows.split(",") if a.rows else None, a.max_windows)


if __name__ == "__main__":
    main()

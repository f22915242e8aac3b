"""Interpreting a trained alignment run: its readout→channel map (the scalp map's values) and the song-by-song
dissimilarity of its EEG embeddings beside that of the music heard.

    python -m chanmusic.evaluation.interpret OUT [--rows a,b] [--max-windows N]

:func:`interpret_comparison` does every row of a ``chanmusic compare`` output folder (``chanmusic compare`` and
``chanmusic report --interpret`` launch it in a subprocess, :func:`chanmusic.report.main.run_interpretation`);
the run is rebuilt with the one run loader (:func:`chanmusic.results.runs.load_run`, the checkpoint rule).
This module computes and saves (``OUT/interpretation/<row>.json``, ``<row>_attention.npy``,
``<row>_dissimilarity.npz``); the report draws the figures the summary names (:mod:`chanmusic.report.interpretation`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from chanmusic.results.checkpoint_rule import find_checkpoint
from chanmusic.results.layout import run_folder, units
from chanmusic.results.metrics_file import read_json


def collect_test_outputs(model, dm, max_windows: int | None = None) -> dict[str, np.ndarray]:
    """Run the encoder (and the stage's ``head`` when it has one) on the test windows.

    Returns ``channel_attention`` ``[W, C]`` (None when the encoder has none), ``embedding`` ``[W, D]`` (the
    head's output, else the encoder's pooled output), ``clap`` ``[W, D_clap]`` and ``song`` ``[W]``.
    """
    import torch

    dm.prepare_data()
    dm.setup("test")
    att, emb, pooled, clap, song = [], [], [], [], []
    seen = 0
    with torch.no_grad():
        for batch in dm.test_dataloader():
            out = model.encoder(batch["eeg"], batch["channel_mask"])
            a, kind = (model.channel_map(batch["eeg"], batch["channel_mask"]) if hasattr(model, "channel_map")
                       else (out.channel_attention, "CLS attention"))  # the map of the readout actually used
            if a is not None:
                att.append(a.float().cpu().numpy())
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
            "song": cat(song), "attention_kind": kind if seen else "CLS attention"}


def song_dissimilarity(emb: np.ndarray, song: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(songs ``[S]``, ``[S, S]`` 1 − cosine similarity of the per-song mean embeddings) of ``emb`` ``[W, D]``
    with song ids ``song`` ``[W]``."""
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


def interpret_run(stepdir: str | Path, outdir: str | Path, name: str, label: str = "",
                  max_windows: int | None = 2000) -> dict[str, Any]:
    """Channel map + dissimilarity matrices of one trained run, saved in ``outdir``; returns the summary (written as
    ``<name>.json``; the figure names in it are relative to ``outdir`` and drawn by the report)."""
    from chanmusic.results.runs import load_run
    from datamodules.songs import SONGS

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    run = load_run(stepdir)
    model, dm = run.model, run.datamodule
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
        summary["attention"] = f"{name}_attention.png"
        summary["attention_windows"] = int(len(att))
        summary["ch_names"] = ch_names
        summary["attention_kind"] = res["attention_kind"]
        top = np.argsort(mean)[::-1][:10]
        summary["top_channels"] = [[ch_names[i], float(mean[i])] for i in top]
        np.save(outdir / f"{name}_attention.npy", mean)
    songs, eeg_rdm = song_dissimilarity(res["embedding"], res["song"])
    _, audio_rdm = song_dissimilarity(res["clap"], res["song"])
    titles = {i: s.title for i, s in enumerate(SONGS)} if SONGS else {}
    names = [_song_name(s, titles) for s in songs]
    r = rdm_correlation(eeg_rdm, audio_rdm)
    np.savez(outdir / f"{name}_dissimilarity.npz", eeg_rdm=eeg_rdm, audio_rdm=audio_rdm)
    summary.update(dissimilarity=f"{name}_dissimilarity.png", songs=names, eeg_rdm=eeg_rdm.round(4).tolist(),
                   audio_rdm=audio_rdm.round(4).tolist(), rdm_spearman=r)
    (outdir / f"{name}.json").write_text(json.dumps(summary, indent=2))
    return summary


def _song_name(s: int, titles: dict) -> str:
    t = titles.get(int(s))
    return f"{int(s)}: {t[:14]}" if t else str(int(s))


def _checkpoint_of(stepdir: Path) -> str | None:
    """The checkpoint :func:`chanmusic.results.runs.load_run` will load (None when the rule finds none)."""
    try:
        return str(find_checkpoint(stepdir))
    except (OSError, ValueError):
        return None


def interpret_comparison(out: str | Path, rows: Sequence[str] | None = None, max_windows: int | None = 2000) -> list[dict]:
    """For each row of ``OUT/spec.json`` with ``interpret`` and a finished music run: :func:`interpret_run`
    on its first finished seed's alignment step; failures are recorded in ``OUT/interpretation/<row>.json``.
    A row whose summary was made from the same checkpoint without error is not redone."""
    out = Path(out)
    spec = json.loads((out / "spec.json").read_text())
    outdir = out / "interpretation"
    done = []
    for row in spec["rows"]:
        if not row.get("interpret", True) or (rows and row["name"] not in rows):
            continue
        stepdir = None
        for _, fold, seed in units(spec):
            st = read_json(run_folder(out, row["name"], seed, False, fold) / "status.json") or {}
            align = (st.get("steps") or {}).get("align") or {}
            if align.get("status") == "done" and align.get("dir"):
                stepdir = Path(align["dir"])
                break
        if stepdir is None:
            continue
        summary_path = outdir / f"{row['name']}.json"
        old = read_json(summary_path)
        ckpt = _checkpoint_of(stepdir)
        if old and old.get("checkpoint") == ckpt and not old.get("error"):
            done.append(old)
            continue
        try:
            s = interpret_run(stepdir, outdir, row["name"], row.get("label", row["name"]), max_windows)
            s["checkpoint"] = ckpt
        except Exception as e:  # noqa: BLE001 - one row's failure must not stop the others
            s = {"row": row["name"], "label": row.get("label"), "checkpoint": ckpt,
                 "error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"}
            print(f"[interpret] interpretation of {row['name']} failed: {s['error']}", file=sys.stderr)
        outdir.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(s, indent=2))
        print(f"[interpret] interpretation of {row['name']}: " + (s.get("error") or "done"))
        done.append(s)
    return done


def main(argv: list[str] | None = None) -> None:
    """``python -m chanmusic.evaluation.interpret OUT``: the interpretation data of every finished row."""
    p = argparse.ArgumentParser(prog="python -m chanmusic.evaluation.interpret",
                                description="Interpretation data (channel maps, dissimilarity matrices) of a "
                                            "`chanmusic compare` output folder; `chanmusic report --interpret` "
                                            "also draws the figures.")
    p.add_argument("out")
    p.add_argument("--rows", default=None, help="comma-separated row names (default: every row)")
    p.add_argument("--max-windows", type=int, default=2000)
    a = p.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    interpret_comparison(a.out, a.rows.split(",") if a.rows else None, a.max_windows)


if __name__ == "__main__":
    main()

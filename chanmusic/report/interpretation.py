"""The interpretation figures of a comparison: each row's scalp map and song dissimilarity matrices, drawn from
what :mod:`chanmusic.evaluation.interpret` saved in ``OUT/interpretation`` (its ``<row>.json`` names the figures;
``<row>_attention.npy`` and ``<row>_dissimilarity.npz`` hold the numbers). Evaluation computes, the report draws.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from chanmusic.report.plots import attention_topomap, dissimilarity_figure
from chanmusic.results.metrics_file import read_json


def draw_interpretation(out: str | Path) -> list[Path]:
    """Draw every figure a summary in ``OUT/interpretation`` names whose PNG is missing or older than the summary;
    returns the PNGs drawn."""
    folder = Path(out) / "interpretation"
    drawn = []
    for path in sorted(folder.glob("*.json")):
        s = read_json(path)
        if not isinstance(s, dict) or s.get("error") or "row" not in s:
            continue
        name, title = s["row"], s.get("label") or s["row"]
        att, rdm = folder / f"{name}_attention.npy", folder / f"{name}_dissimilarity.npz"
        if s.get("attention") and s.get("ch_names") and att.is_file() and _stale(folder / s["attention"], path):
            drawn.append(attention_topomap(
                np.load(att), s["ch_names"], folder / s["attention"],
                f"{title}: readout→channel map, {s.get('attention_kind')}\n"
                f"(mean over {s.get('attention_windows')} test windows)"))
        if s.get("dissimilarity") and rdm.is_file() and _stale(folder / s["dissimilarity"], path):
            r = s.get("rdm_spearman")
            with np.load(rdm) as m:
                drawn.append(dissimilarity_figure(
                    m["eeg_rdm"], s["songs"], folder / s["dissimilarity"],
                    f"{title}: song dissimilarity (test windows)"
                    + (f"; Spearman r(EEG, music) = {r:.2f}" if r is not None else ""), m["audio_rdm"]))
    return drawn


def _stale(png: Path, summary: Path) -> bool:
    return not png.is_file() or png.stat().st_mtime < summary.stat().st_mtime

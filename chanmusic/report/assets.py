"""The report's ``assets/`` folder: copies of the plots, interpretation figures and audio clips (with their mel
images), so the page links only relatively and works wherever the folder is moved."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from chanmusic.report.rows import RowResult
from chanmusic.report.manifest import clap_score, find_manifests, wav_pairs
from chanmusic.report.plots import mel_png


def copy_asset(src: Path | None, assets: Path, sub: str) -> str | None:
    """Copy ``src`` to ``assets/<sub>/`` and return its path relative to the report folder (None if missing)."""
    if not src or not Path(src).is_file():
        return None
    dest = assets / sub / Path(src).name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if Path(src).resolve() != dest.resolve():
        shutil.copyfile(src, dest)
    return dest.relative_to(assets.parent).as_posix()


def audio_samples(out: Path, row: RowResult, assets: Path, n: int) -> tuple[list[dict], str | None]:
    """Up to ``n`` (true, generated) clip pairs of the row's first run with a prediction manifest, copied into
    ``assets/audio/<row>/`` with mel images; or ([], reason)."""
    for d in row.run_dirs:
        mans = find_manifests(d)
        if not mans:
            continue
        man = mans[0]
        good = wav_pairs(man)
        if not good:
            return [], f"manifest {man['path'].name} lists no readable wav pairs"
        idx = np.unique(np.linspace(0, len(good) - 1, min(n, len(good))).round().astype(int))
        dest = assets / "audio" / row.name
        dest.mkdir(parents=True, exist_ok=True)
        out_items = []
        for j, i in enumerate(idx):
            it, g, t = good[i]
            seg = it.get("segment", it.get("id", i))
            tc, gc = dest / f"{j:02d}_true{t.suffix}", dest / f"{j:02d}_generated{g.suffix}"
            shutil.copyfile(t, tc)
            shutil.copyfile(g, gc)
            tm = mel_png(tc, dest / f"{j:02d}_true_mel.png", "true")
            gm = mel_png(gc, dest / f"{j:02d}_generated_mel.png", "reconstructed")
            out_items.append({"segment": seg, "true": tc, "generated": gc, "true_mel": tm, "generated_mel": gm,
                              "clap_score": clap_score(it), "song": it.get("song_name") or it.get("song")})
        return out_items, None
    return [], "no audio written for this row"

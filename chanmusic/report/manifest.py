"""Prediction manifests: the ``predictions/manifest.json|csv`` the reconstruction step writes beside its clips.

Items name the generated and the true wav (relative to the manifest's folder or absolute) and optionally the
CLAP score, segment id and song; the run facts (e.g. ``audioldm_is_random``) sit in the manifest's meta.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

GEN_KEYS = ("generated", "generated_wav", "generated_path", "gen", "gen_wav", "pred_wav", "prediction",
            "reconstruction", "reconstructed", "recon_wav", "fake")
TRUE_KEYS = ("true", "true_wav", "true_path", "target", "target_wav", "ground_truth", "gt", "gt_wav",
             "reference", "real")
SCORE_KEYS = ("clap_score", "clap", "score", "clap_cosine")


def find_manifests(root: Path) -> list[dict]:
    """Every ``predictions/manifest.json|csv`` under ``root`` as ``{"path", "items": [dict], "meta": dict}``."""
    found = []
    for p in sorted(Path(root).rglob("predictions/manifest.*"), key=lambda q: (q.suffix.lower() != ".json", str(q))):
        if p.suffix.lower() not in (".json", ".csv"):
            continue
        m = read_manifest(p)
        if m is not None:
            found.append(m)
    return found


def read_manifest(p: Path) -> dict | None:
    """A prediction manifest: JSON (a list of items, or ``{"items"|"segments"|"predictions": [...], ...}``)
    or CSV (one item per line). Items name the generated and true wav (relative to the manifest's folder or
    absolute) and optionally the CLAP score and segment id."""
    try:
        if p.suffix.lower() == ".csv":
            with p.open(newline="") as f:
                items, meta = list(csv.DictReader(f)), {}
        else:
            d = json.loads(p.read_text())
            if isinstance(d, list):
                items, meta = d, {}
            else:
                key = next((k for k in ("items", "segments", "predictions", "clips") if isinstance(d.get(k), list)), None)
                items = d.get(key, []) if key else []
                meta = {k: v for k, v in d.items() if k != key}
                if isinstance(d.get("info"), dict):  # AudioPredictionWriter: run facts under "info"
                    meta = {**d["info"], **meta}
    except (OSError, json.JSONDecodeError, csv.Error):
        return None
    return {"path": p, "items": [i for i in items if isinstance(i, dict)], "meta": meta}


def _pick(item: dict, keys: Sequence[str]) -> Any:
    for k in keys:
        if item.get(k) not in (None, ""):
            return item[k]
    return None


def _resolve(path: Any, base: Path) -> Path | None:
    if path in (None, ""):
        return None
    p = Path(str(path))
    for cand in ([p] if p.is_absolute() else [base / p, base.parent / p, p]):
        if cand.is_file():
            return cand
    return None


def wav_pairs(manifest: dict) -> list[tuple[dict, Path, Path]]:
    """The manifest's items whose generated and true wav both exist, as ``(item, generated, true)``."""
    base = manifest["path"].parent
    good = []
    for it in manifest["items"]:
        g, t = _resolve(_pick(it, GEN_KEYS), base), _resolve(_pick(it, TRUE_KEYS), base)
        if g and t:
            good.append((it, g, t))
    return good


def clap_score(item: dict) -> float | None:
    """The item's CLAP score as a float (None when absent or not a number)."""
    score = _pick(item, SCORE_KEYS)
    try:
        return float(score) if score is not None else None
    except ValueError:
        return None

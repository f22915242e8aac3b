"""Per-fold tables of a comparison with folds (``folds: subjects k=5`` / ``songs k=7``).

The main table pools every fold (folds × seeds; :mod:`chanmusic.report.rows`); here each fold gets its own table,
from the same run folders read for that fold only (:func:`chanmusic.report.rows.collect` with ``fold``), headed by
what the fold holds out (``OUT/folds.json``: its subjects, or its songs with their titles and genres), and its own
verdict on the primary metric (paired over the fold's test recordings with one seed).
"""
from __future__ import annotations

from pathlib import Path

from chanmusic.report.rows import RowResult, collect, sections
from chanmusic.results.metrics_file import read_json


def held_out_text(out: Path, spec: dict, fold: int) -> str:
    """What fold ``fold`` holds out, in words (``songs 3 (Careless Love, house), 10 (…)`` or ``subjects [1, 3]``)."""
    rec = read_json(Path(out) / "folds.json") or {}
    if spec["folds"].get("by") == "songs":
        songs = (rec.get("test_songs") or [])
        if fold >= len(songs):
            return "songs (not recorded)"
        from datamodules.songs import SONGS

        return "songs " + ", ".join(f"{s} ({SONGS[s].title}, {SONGS[s].genre})" if s < len(SONGS) else str(s)
                                    for s in songs[fold])
    subs = rec.get("test_subjects") or []
    return f"subjects {subs[fold]}" if fold < len(subs) else "subjects (not recorded)"


def fold_results(out: str | Path, spec: dict) -> list[tuple[int, str, list[RowResult]]]:
    """``(fold, what it holds out, its main rows)`` of every fold; empty without folds."""
    if not spec.get("folds"):
        return []
    out = Path(out)
    res = []
    for f in range(int(spec["folds"]["k"])):
        _, results = collect(out, fold=f)
        res.append((f, held_out_text(out, spec, f), sections(spec, results)[0]))
    return res


def fold_markdown(out: str | Path, spec: dict, metrics: list[str], primary: str) -> list[str]:
    """The ``## Per fold`` section of ``results.md`` (lines)."""
    from chanmusic.report.console import gain_verdicts
    from chanmusic.report.tables import markdown_table

    parts: list[str] = []
    for f, held, rows in fold_results(out, spec):
        parts += [f"### fold{f}: holds out {held}", "", markdown_table(rows, metrics), ""]
        parts += [f"- {v.strip()}" for v in gain_verdicts(rows, primary)] + [""]
    return (["## Per fold (each fold's own test set; the main table pools them)", ""] + parts) if parts else []


def fold_text(out: str | Path, spec: dict, metrics: list[str], primary: str) -> list[str]:
    """The per-fold tables printed at the end of ``chanmusic compare`` (lines)."""
    from chanmusic.report.console import gain_verdicts, text_table

    parts: list[str] = []
    for f, held, rows in fold_results(out, spec):
        parts += ["", f"fold{f} (holds out {held}):", "", text_table(rows, metrics)]
        parts += gain_verdicts(rows, primary)
    return parts

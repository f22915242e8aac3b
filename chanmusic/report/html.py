"""The report page: ``OUT/report/index.html`` + ``OUT/report/assets/`` rendered from the jinja2 templates in
``chanmusic/report/templates/`` (autoescape on: every value is escaped by the template engine).

Everything the page shows is copied into ``assets/`` and linked relatively: open the file directly, no server
and no network.
"""
from __future__ import annotations

import re
import shutil
from functools import lru_cache
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from chanmusic.core.files import atomic_write_text
from chanmusic.report.assets import audio_samples, copy_asset
from chanmusic.report.rows import RowResult, detect_random_models, sections
from chanmusic.report.results import write_results
from chanmusic.report.tables import metric_header, notes, table_lines
from chanmusic.results.metrics_file import read_json

TEMPLATES = Path(__file__).parent / "templates"
LINE_KIND = {"chance": "chance", "ours": "ours", "no-music control": "control", "gain over control": "gain",
             "paper": "paper"}


def md_inline(text: str) -> Markup:
    """A note's Markdown inline marks (``**bold**``, ```code```) as HTML, the text itself escaped."""
    s = str(escape(text))
    s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
    return Markup(re.sub(r"`(.+?)`", r"<code>\1</code>", s))


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The template environment (autoescape, strict undefined, the ``md_inline`` filter)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["md_inline"] = md_inline
    return env


def table_rows(results: list[RowResult], metrics: list[str]) -> list[dict]:
    """:func:`chanmusic.report.tables.table_lines` for the template: per line its kind (CSS class), model, line,
    status and numbers (``value``, the CI shown on a second line or None, ``failed``)."""
    rows = []
    for cells in table_lines(results, metrics):
        nums = []
        for c in cells[3:]:
            value, ci95 = c.split(" [", 1) if " [" in c else (c, None)
            nums.append({"value": value, "ci95": ci95, "failed": c in ("failed", "not run")})
        rows.append({"kind": LINE_KIND.get(cells[1] or ("chance" if cells[0] == "chance" else ""), ""),
                     "model": cells[0], "line": cells[1], "status": cells[2],
                     "status_failed": cells[2].startswith(("failed", "partial")), "nums": nums})
    return rows


def _interpretation(out: Path, results: list[RowResult], assets: Path) -> list[dict]:
    """Per row with an ``OUT/interpretation/<row>.json``: its error, or its figures copied into the assets."""
    items = []
    for r in results:
        s = read_json(out / "interpretation" / f"{r.name}.json")
        if not s:
            continue
        it = {"label": r.label, "name": r.name, "error": s.get("error"), "attention": s.get("attention"),
              "attention_note": s.get("attention_note"), "dissimilarity": s.get("dissimilarity")}
        if not it["error"]:
            if it["attention"]:
                it["attention_src"] = copy_asset(out / "interpretation" / s["attention"], assets, "interpretation")
                it["top_channels"] = ", ".join(c for c, _ in (s.get("top_channels") or [])[:6])
            if it["dissimilarity"]:
                it["dissimilarity_src"] = copy_asset(out / "interpretation" / s["dissimilarity"], assets,
                                                     "interpretation")
                rho = s.get("rdm_spearman")
                it["caption"] = (f"{s.get('n_windows')} test windows"
                                 + (f"; Spearman r(EEG, music) = {rho:.2f}" if rho is not None else ""))
        items.append(it)
    return items


def _audio(out: Path, results: list[RowResult], report: Path, assets: Path, n: int) -> list[dict]:
    """Per row: up to ``n`` true/reconstructed clip pairs (paths relative to ``report``), or why there are none."""
    rows = []
    for r in results:
        found, why = audio_samples(out, r, assets, n)
        rel = lambda p: p.relative_to(report).as_posix() if p else None  # noqa: E731
        items = [{"segment": it["segment"], "song": it.get("song"),
                  "score": f"CLAP score {it['clap_score']:.3f}" if it.get("clap_score") is not None
                  else "CLAP score n/a",
                  "clips": [{"kind": kind, "title": "true" if kind == "true" else "reconstructed",
                             "audio": rel(it[kind]), "mel": rel(it[f"{kind}_mel"])}
                            for kind in ("true", "generated")]} for it in found]
        rows.append({"label": r.label, "why": why, "items": items})
    return rows


def build_report(out: str | Path, audio_per_row: int = 3) -> Path:
    """Write ``OUT/report/index.html`` (+ ``assets/``) from the comparison folder; returns the index path."""
    out = Path(out)
    spec, results, plot_paths = write_results(out)
    metrics = list(spec["metrics"])
    main, abl = sections(spec, results)
    report = out / "report"
    assets = report / "assets"
    if assets.exists():
        shutil.rmtree(assets)
    assets.mkdir(parents=True)
    random_models = detect_random_models(out, spec)
    page = environment().get_template("index.html.j2").render(
        title=spec["title"],
        random_models=" and ".join(x for x, f in (("CLAP", random_models.get("clap")),
                                                   ("AudioLDM", random_models.get("audioldm"))) if f),
        demo=random_models.get("demo"),
        profile_name=spec["profile_name"], n_seeds=len(spec["seeds"]), spec_name=Path(spec["path"]).name,
        metrics=[metric_header(results, m) for m in metrics], main=table_rows(main, metrics), ablations=table_rows(abl, metrics) if abl else None,
        reference_row=spec.get("reference_row"),
        notes=notes(spec, results, random_models),
        plots=[{"src": copy_asset(p, assets, "plots"), "name": p.stem} for p in plot_paths],
        interpretation=_interpretation(out, results, assets),
        audio=_audio(out, results, report, assets, audio_per_row),
    )
    index = report / "index.html"
    atomic_write_text(index, page)
    return index

"""``chanmusic report``: the comparison's tables, plots and static HTML report.

stats (t-intervals, gains) · rows (run folders -> one :class:`RowResult` per table row) · tables (Markdown,
CSV) · plots (every figure) · interpretation (the scalp maps and dissimilarity matrices from the saved data) ·
manifest (prediction manifests) · assets (files copied beside the page) · results (results.md/csv, plots/) · html
(the page, from ``templates/*.html.j2``) · main (the command line). Metric names, paper names and run folders come
from :mod:`chanmusic.results`.
"""
from chanmusic.report.html import build_report
from chanmusic.report.main import run_interpretation
from chanmusic.report.results import write_results
from chanmusic.report.rows import Cell, RowResult, collect
from chanmusic.report.stats import gain_summary, seed_summary, within_run_summary
from chanmusic.report.tables import flat_metrics

__all__ = ["Cell", "RowResult", "build_report", "collect", "flat_metrics", "gain_summary",
           "run_interpretation", "seed_summary", "within_run_summary", "write_results"]

"""Evaluation: the metrics as torchmetrics ``Metric``s (metrics, collapse), their intervals, provenance, the genre
classifier; ``interpret`` and ``robustness`` compute on finished runs. Nothing here imports the CLI or the report:
what a run writes and where is :mod:`chanmusic.results`, figures are drawn by :mod:`chanmusic.report`."""

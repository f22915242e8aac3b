"""What a run leaves behind and how it is read back: one owner for results.

- :mod:`~chanmusic.results.metrics_file`: ``metrics.json`` (its schema and version, the entry of one metric, the
  one reader, the one atomic merge-writer) and the one ``read_json``.
- :mod:`~chanmusic.results.layout`: where a comparison's runs live (``OUT/runs/<row>/seed<k>/{music,control}``).
- :mod:`~chanmusic.results.checkpoint_rule`: which checkpoint of a run counts (``fit_done.json``, best, last).
- :mod:`~chanmusic.results.registry`: every metric a run writes, its kind, chance and paper name.
- :mod:`~chanmusic.results.runs`: the one run loader (a run folder back as a model, data module and trainer).

Nothing is imported here, so that a light caller (the runner's job process) pays only for the module it uses.
"""

"""``chanmusic robustness``: 50-way identification as electrodes are removed at test time.

    chanmusic robustness --ckpt RUN [RUN2 ...] [--config RUN/config.yaml ...] [--k 0,8,16,32,64,96]
                         [--mode random,region] [--seeds 3] [--out DIR] [--data.* overrides]

Each ``--ckpt`` is a trained alignment run: a checkpoint file or the run folder itself, resolved by the one run
loader, ``chanmusic.results.runs`` (the checkpoint rule of ``chanmusic.results.checkpoint_rule``:
``fit_done.json``'s, else the newest non-``last`` one, else ``last.ckpt``). The run's saved ``config.yaml`` (or
``--config``) rebuilds the model and the data; weights load with ``weights_only=True`` and every key checked.

For every ``k`` (electrodes removed), ``mode`` and seed, the same electrodes are marked absent
(``channel_mask`` False) in every test window and for every encoder:

- ``random``: ``k`` electrodes drawn uniformly;
- ``region``: the ``k`` electrodes nearest to a random centre electrode (MNE montage positions of the data's
  channel names) — a whole missing region of the cap.

Per (mode, seed) one removal order is drawn, and ``k`` removes its first ``k`` electrodes, so the removed sets
are nested in ``k`` (the curve of one seed is one cap losing more and more electrodes). Removals depend only on
the channel names, mode and seed, never on the encoder. What each encoder does with a mask is its own business
(the channel-oriented encoder removes the tokens; baselines zero-fill; see their docstrings).

Writes ``OUT/robustness.csv`` (one row per encoder × mode × k × seed: the run's id50 mean/std over its distractor
repeats, chance, n windows, electrodes kept) and ``OUT/robustness.png`` (id50 vs k for all encoders, mean ± std
over seeds, one panel per mode, chance dashed; drawn by ``chanmusic.report.plots``), and merges into each run's
``metrics.json`` (the one writer, ``chanmusic.results.metrics_file``) ``id50_k{k}`` (random mode) and
``id50_k{k}_region``: mean and std over seeds, ``n`` test windows, ``chance``, ``repeats`` = number of seeds (what
the std is over).

Files: ``removal`` (which electrodes go), ``evaluate`` (runs, id50 per removal, metrics.json entries), ``outputs``
(CSV, the figure's data, text table): they compute and never draw; ``command`` (arguments and the ``chanmusic
robustness`` entry point, which has the report draw the figure) is not imported here.
"""
from chanmusic.evaluation.robustness.evaluate import (Run, evaluate_run, identification, load_aligned,
                                                      load_test_batches, metric_name, metrics_entries, summarize,
                                                      write_run_metrics)
from chanmusic.evaluation.robustness.outputs import curves, read_csv, table, write_csv
from chanmusic.evaluation.robustness.removal import MODES, kept_channels, removal_order

__all__ = ["MODES", "Run", "curves", "evaluate_run", "identification", "kept_channels", "load_aligned",
           "load_test_batches", "metric_name", "metrics_entries", "read_csv", "removal_order", "summarize", "table",
           "write_csv", "write_run_metrics"]

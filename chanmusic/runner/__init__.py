"""The comparison runner behind ``chanmusic compare`` (:mod:`chanmusic.runner.compare`, the command line).

``spec`` (the spec file and its profiles) → ``plan`` (runs, folders, steps) → ``sweep`` (the :class:`Runner`)
→ ``execute`` (one step's subprocess) → ``worker`` (the step inside it); ``status`` (what is recorded in
``OUT``), ``cache_pass`` (data caches before parallel runs), ``lock`` (one runner per folder).
The names below are re-exported for callers outside the package (``chanmusic.runner.compare`` and
``chanmusic.runner.worker`` are not imported here: both run as ``python -m``).
"""
from chanmusic.runner.cache_pass import data_settings
from chanmusic.runner.execute import run_step
from chanmusic.runner.lock import acquire_lock
from chanmusic.runner.plan import RunPlan, Step, plan_runs, pretrain_dir, run_dir, run_overrides
from chanmusic.runner.spec import DEFAULT_SPEC, EXPERIMENTS, Row, Spec, deep_merge, load_spec
from chanmusic.runner.status import merged_metrics, read_status, save_spec, write_status
from chanmusic.runner.sweep import Runner

__all__ = ["DEFAULT_SPEC", "EXPERIMENTS", "Row", "RunPlan", "Runner", "Spec", "Step", "acquire_lock", "data_settings",
           "deep_merge", "load_spec", "merged_metrics", "plan_runs", "pretrain_dir", "read_status", "run_dir",
           "run_overrides", "run_step", "save_spec", "write_status"]

"""The comparison runner behind ``chanmusic compare`` (:mod:`chanmusic.runner.compare`, the command line).

``spec`` (the spec file and its profiles) → ``plan`` (runs, folders, steps) → ``sweep`` (the :class:`Runner`)
→ ``execute`` (one step's job) → ``engine`` (submitit: where the job runs) → ``worker`` (the step inside it);
``status`` (what is recorded in ``OUT``), ``progress`` (progress lines), ``cache_pass`` (data caches before the
runs), ``folds`` (cross-subject folds), ``lock`` (one runner per folder).
The names below are re-exported for callers outside the package, imported on first use: a job's process
imports :mod:`chanmusic.runner.engine` alone, without the rest (``chanmusic.runner.compare`` and
``chanmusic.runner.worker`` are not re-exported: both run as ``python -m``).
"""
from importlib import import_module

_WHERE = {
    "data_settings": "cache_pass", "run_step": "execute", "acquire_lock": "lock",
    "EngineSettings": "engine", "StepJob": "engine",
    "RunPlan": "plan", "Step": "plan", "plan_runs": "plan", "run_overrides": "plan",
    "DEFAULT_SPEC": "spec", "EXPERIMENTS": "spec", "Row": "spec", "Spec": "spec", "deep_merge": "spec",
    "load_spec": "spec",
    "merged_metrics": "status", "read_status": "status", "save_spec": "status", "write_status": "status",
    "Runner": "sweep",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"chanmusic.runner.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'chanmusic.runner' has no attribute {name!r}")

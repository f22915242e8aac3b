"""The checkpoint rule: which checkpoint of a finished run counts, in one place.

Writing side (after ``fit``): :data:`RULE` is ``"last"``: a run is scored at the **last optimiser step of its
budget**, saved by :func:`selected_checkpoint` as ``checkpoints/final.ckpt``. The rule looks at nothing (no
validation score, no control), so the music run and its no-music control of a row, which get the same budget,
are scored at the same step (validation loss would pick an early step for the control, whose targets cannot be
learned, and a late one for the music run). The runner stores the file, the step and the rule in
``fit_done.json`` and the test step copies them into ``metrics.json`` as ``"checkpoint"``.

Reading side, the checkpoint of a run folder (:func:`find_checkpoint`; robustness, interpretation, the report):

1. ``RUN/fit_done.json``'s ``"checkpoint"`` when the file exists and names one (the runner's choice, so results of
   ``compare`` and the demo never depend on step 2);
2. else the newest (by modification time) ``RUN/checkpoints/*.ckpt`` whose name does not start with ``last``: with
   ModelCheckpoint's default ``save_top_k=1`` that is the best checkpoint on the monitored validation metric;
3. else the newest ``RUN/checkpoints/last*.ckpt``.

``--ckpt_path best`` / ``last`` of ``chanmusic test`` (and ``fit``'s ``last``) apply the same steps to the
checkpoints of every earlier version of the run's logger (:func:`earlier_best_checkpoint`,
:func:`earlier_last_checkpoint`): Lightning itself looks only in the new run's version folder, which a logger
with automatic versions has just made empty.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

FIT_DONE = "fit_done.json"
RULE = "last"  #: the last optimiser step of the run's budget, for music and control alike
RULE_TEXT = "last step of the budget (both arms)"


def selected_checkpoint(trainer, run_dir: str | Path) -> str | None:
    """The checkpoint a finished ``fit`` is scored at by :data:`RULE`, as an absolute path (what ``fit_done.json``
    records): the trainer's state at the end of ``fit`` saved as ``run_dir/checkpoints/final.ckpt`` (whatever a
    ModelCheckpoint callback kept on validation is not used)."""
    path = Path(run_dir) / "checkpoints" / "final.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(str(path))
    return str(path.resolve())


def checkpoint_record(path: str | Path, step: int) -> dict:
    """What ``fit_done.json`` and ``metrics.json``'s ``"checkpoint"`` say of the scored checkpoint."""
    return {"checkpoint": str(path), "step": int(step), "rule": RULE}


def fit_choice(run_dir: str | Path) -> str | None:
    """Step 1: the checkpoint ``RUN/fit_done.json`` names (``None`` without the file or the entry)."""
    done = Path(run_dir) / FIT_DONE
    return json.loads(done.read_text()).get("checkpoint") if done.is_file() else None


def newest(paths: Iterable[Path], last: bool) -> Path | None:
    """Steps 2 and 3: the newest of ``paths`` (by modification time) whose name starts with ``last`` (``last``
    true) or does not (false); ``None`` when there is none."""
    found = [p for p in paths if p.name.startswith("last") == last]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def find_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint of a run folder by the rule (fit_done.json, best, last).

    Raises ``FileNotFoundError`` when ``fit_done.json`` names a missing file or the rule finds no checkpoint.
    """
    run_dir = Path(run_dir)
    ck = fit_choice(run_dir)
    if ck:
        if not Path(ck).is_file():
            raise FileNotFoundError(f"{run_dir / FIT_DONE}: its checkpoint {ck} does not exist")
        return Path(ck)
    cks = list((run_dir / "checkpoints").glob("*.ckpt"))
    found = newest(cks, last=False) or newest(cks, last=True)
    if found is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoints/*.ckpt (is this a finished run folder?)")
    return found


def run_dir_of(ckpt: str | Path) -> Path:
    """The run folder of checkpoint file ``ckpt``: the first of the file's folder and the folder above it that holds
    a ``config.yaml``; when neither does, the folder above ``checkpoints/`` (or the file's own folder). The path is
    not resolved."""
    p = Path(ckpt)
    for d in (p.parent, p.parent.parent):
        if (d / "config.yaml").is_file():
            return d
    return p.parent.parent if p.parent.name == "checkpoints" else p.parent


def earlier_last_checkpoint(trainer) -> Path | None:
    """The newest ``last*.ckpt`` in ``<logger root>/<version>/checkpoints/`` over all versions, when the
    checkpoint callbacks use the logger's folders (no ``dirpath``; else in their ``dirpath``); ``None`` when there
    is none (Lightning then decides)."""
    return newest(_checkpoints(trainer, "last*.ckpt"), last=True)


def earlier_best_checkpoint(trainer) -> Path | None:
    """The best checkpoint of the newest earlier version: the newest ``*.ckpt`` not named ``last*`` (step 2), or
    the one its run's ``fit_done.json`` names when that file exists (step 1); ``None`` when there is no such
    checkpoint."""
    found = newest(_checkpoints(trainer, "*.ckpt"), last=False)
    if found is None:
        return None
    chosen = fit_choice(found.parent.parent)
    return Path(chosen) if chosen and Path(chosen).is_file() else found


def _checkpoints(trainer, pattern: str) -> list[Path]:
    from lightning.pytorch.callbacks import ModelCheckpoint

    callbacks = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)]
    dirs = {c.dirpath for c in callbacks if c.dirpath}
    if dirs:  # explicit folders (test and fit share the config, so they are the fit's)
        return [p for d in dirs for p in Path(d).glob(pattern)]
    root = getattr(trainer.logger, "root_dir", None)
    if not callbacks or not root:
        return []
    return list(Path(root).glob(f"*/checkpoints/{pattern}"))

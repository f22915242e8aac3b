"""The one run loader: a finished Lightning run (its saved ``config.yaml`` + one checkpoint) back as objects.

A *run folder* is what ``fit`` leaves: ``RUN/config.yaml`` (LightningCLI's saved config), ``RUN/checkpoints/*.ckpt``
and, when the runner (``chanmusic compare`` / the demo) fitted it, ``RUN/fit_done.json``. Which checkpoint counts
is the checkpoint rule (:mod:`chanmusic.results.checkpoint_rule`). The model, data module and trainer are built by
the same configured LightningCLI as ``chanmusic fit`` (:mod:`chanmusic.lightning_cli`). Weights always load with
``weights_only=True`` and every key checked (``chanmusic.core.checkpoints``).

Public: :func:`run_config_of`, :func:`resolve_run`, :func:`load_run` (-> :class:`LoadedRun`),
:func:`read_checkpoint`, :func:`encoder_from_config`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from torch import Tensor, nn

from chanmusic.core.checkpoints import CheckpointError, load_strict, safe_load, state_dict_of
from chanmusic.results.checkpoint_rule import find_checkpoint, run_dir_of

__all__ = ["CONFIG_KEYS", "LoadedRun", "run_config_of", "resolve_run", "load_run", "read_checkpoint",
           "encoder_from_config"]

#: top-level keys of a saved config that the CLI accepts with ``run=False`` (``fit`` also saves ``ckpt_path``)
CONFIG_KEYS = ("seed_everything", "trainer", "model", "data", "optimizer", "lr_scheduler")
#: the data facts the CLI links into an encoder (absent from a saved config's encoder section)
ENCODER_FACTS = ("n_channels", "sfreq", "n_times", "ch_names")


# ------------------------------------------------------------------------------------------------ run folders
def run_config_of(ckpt: str | Path) -> Path | None:
    """The ``config.yaml`` LightningCLI saved for the run that wrote ``ckpt`` (beside it or one folder up)."""
    cfg = run_dir_of(Path(ckpt).resolve()) / "config.yaml"
    return cfg if cfg.is_file() else None


def resolve_run(spec: str | Path, config: str | Path | None = None) -> tuple[Path, Path, Path]:
    """``(run_dir, checkpoint, config)`` of a run given as a checkpoint file or a run folder.

    A folder: its checkpoint by :func:`find_checkpoint`. A file: that checkpoint, its folder by :func:`run_dir_of`.
    ``config`` (default ``run_dir/config.yaml``) must exist.
    """
    p = Path(spec)
    if p.is_dir():
        run_dir, ckpt = p, find_checkpoint(p)
    elif p.is_file():
        run_dir, ckpt = run_dir_of(p), p
    else:
        raise FileNotFoundError(f"--ckpt {p}: no such checkpoint or run folder")
    cfg = Path(config) if config else run_dir / "config.yaml"
    if not cfg.is_file():
        raise FileNotFoundError(f"{cfg}: no saved config (pass --config for this checkpoint)")
    return run_dir, ckpt, cfg


# ------------------------------------------------------------------------------------------------ loading
@dataclass
class LoadedRun:
    """A trained run rebuilt for evaluation: ``model`` (checkpoint weights, eval mode), its data module and a
    trainer without logger, callbacks or checkpointing whose ``log_dir`` is ``run_dir``."""

    run_dir: Path
    ckpt: Path
    config: Path
    model: Any
    datamodule: Any
    trainer: Any


def load_run(spec: str | Path, config: str | Path | None = None, overrides: Sequence[str] = (),
             device: str = "cpu") -> LoadedRun:
    """Rebuild a trained run (checkpoint file or run folder, see :func:`resolve_run`) from its saved config.

    The saved config (only its :data:`CONFIG_KEYS`) goes through the configured LightningCLI
    (:func:`chanmusic.lightning_cli.build_cli`, ``run=False``) with no logger, no callbacks, no checkpointing, one
    CPU device and ``default_root_dir = run_dir``; ``overrides`` (``--data.*`` / ``--model.*`` arguments) come last.
    ``init_from`` (or its old name) is dropped (the checkpoint holds every weight). The checkpoint's weights load strictly
    (``weights_only=True``, every key checked); the model is put in eval mode on ``device``. Gradient mode and the
    random state are left as the CLI leaves them (``seed_everything`` in the config seeds).
    """
    import yaml

    from chanmusic.lightning_cli import build_cli

    run_dir, ckpt, cfg = resolve_run(spec, config)
    saved = yaml.safe_load(cfg.read_text()) or {}
    # a config saved by `fit` also holds the subcommand's own keys (ckpt_path): keep what run=False accepts
    saved = {k: v for k, v in saved.items() if k in CONFIG_KEYS}
    args = ["--config", yaml.safe_dump(saved),
            # evaluation needs no logger, callbacks or the training devices; log_dir = the run folder
            "--trainer.logger", "false", "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false",
            "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.num_nodes", "1",
            "--trainer.strategy", "auto", "--trainer.default_root_dir", str(run_dir)]
    init = (saved.get("model") or {}).get("init_args") or {}
    # the checkpoint holds every weight: the pretraining file is not needed (init_encoder_from: its old name)
    for key in ("init_from", "init_encoder_from"):
        if init.get(key):
            args += [f"--model.init_args.{key}", "null"]
    argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI reads `args` only
    try:
        cli = build_cli(args + list(overrides), run=False)
    finally:
        sys.argv = argv
    model = cli.model
    load_strict(model, state_dict_of(safe_load(ckpt)), str(ckpt))
    model.eval().to(device)
    return LoadedRun(run_dir, ckpt, cfg, model, cli.datamodule, cli.trainer)


def read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(state_dict, hyper_parameters)`` of a Lightning ``.ckpt`` or a plain state dict (``weights_only=True``;
    ``{}`` hyperparameters when the file records none)."""
    ckpt = safe_load(path)
    hp = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    return state_dict_of(ckpt), dict(hp or {})


def encoder_from_config(config: Path, facts_from: nn.Module) -> nn.Module:
    """Instantiate the encoder of a saved LightningCLI config, with the data facts (``n_channels``, ``sfreq``,
    ``n_times``, ``ch_names``; linked by the CLI, so absent from the saved file) taken from ``facts_from``.

    Only the encoder is built (no data module, no stage): for stages that load another run's weights
    (``chanmusic.stages.reconstruct``). Raises ``CheckpointError`` when the config names no encoder class.
    """
    import yaml
    from jsonargparse import ArgumentParser

    cfg = yaml.safe_load(config.read_text()) or {}
    spec = ((cfg.get("model") or {}).get("init_args") or {}).get("encoder")
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise CheckpointError(f"{config}: no model.init_args.encoder with a class_path")
    init = dict(spec.get("init_args") or {})
    for fact in ENCODER_FACTS:
        if hasattr(facts_from, fact):
            init[fact] = getattr(facts_from, fact)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(nn.Module, "encoder")
    parsed = parser.parse_object({"encoder": {"class_path": spec["class_path"], "init_args": init}})
    return parser.instantiate_classes(parsed).encoder

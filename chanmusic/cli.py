"""The ``chanmusic`` console script: LightningCLI subcommands plus ``prepare`` (and others as they land).

    chanmusic prepare --data.root DIR [--data.* ...]
    chanmusic fit|validate|test|predict --config experiments/....yaml
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LightningCLI

from datamodules.datamodule import NMEDDataModule

# extra subcommands: name -> "module:function" taking argv (kept lazy so `--help` is fast)
EXTRA_COMMANDS: dict[str, str] = {
    "prepare": "chanmusic.cli:prepare_main",
    "compare": "chanmusic.runner.compare:main",
    "report": "chanmusic.report.main:main",
    "robustness": "chanmusic.evaluation.robustness:main",
}


def _install_preparer() -> None:
    from chanmusic.data.prepare import prepare

    NMEDDataModule.preparer = staticmethod(prepare)


class ChanMusicCLI(LightningCLI):
    """LightningCLI with the data module's facts linked into the encoder and the stage."""

    def add_arguments_to_parser(self, parser) -> None:
        for fact in ("n_channels", "sfreq", "n_times", "ch_names"):
            parser.link_arguments(f"data.{fact}", f"model.init_args.encoder.init_args.{fact}", apply_on="instantiate")
        parser.link_arguments("data.clap_dim", "model.init_args.clap_dim", apply_on="instantiate")

    def before_fit(self) -> None:
        """``--ckpt_path last`` resumes the newest ``last.ckpt`` of an earlier version of the run (see
        :func:`earlier_last_checkpoint`)."""
        cfg = self.config_init[self.subcommand]
        if cfg.get("ckpt_path") == "last":
            found = earlier_last_checkpoint(self.trainer)
            if found is not None:
                logging.getLogger("chanmusic").info("--ckpt_path last: resuming from %s", found)
                cfg["ckpt_path"] = str(found)


def earlier_last_checkpoint(trainer) -> Path | None:
    """The newest ``last*.ckpt`` in ``<logger root>/<version>/checkpoints/`` over all versions, when the
    checkpoint callbacks use the logger's folders (no ``dirpath``); else ``None`` (Lightning finds it).

    Lightning looks for ``last`` only in the *new* run's version folder, which a logger with automatic
    versions (our YAMLs' TensorBoardLogger) has just made empty: ``--ckpt_path last`` after a crash would
    warn and train from scratch.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    callbacks = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)]
    root = getattr(trainer.logger, "root_dir", None)
    if not callbacks or any(c.dirpath for c in callbacks) or not root:
        return None
    found = list(Path(root).glob("*/checkpoints/last*.ckpt"))
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def lightning_main(args: list[str] | None = None, run: bool = True) -> ChanMusicCLI:
    _install_preparer()
    return ChanMusicCLI(
        LightningModule, NMEDDataModule, subclass_mode_model=True, args=args, run=run,
        save_config_kwargs={"overwrite": True},
    )


def prepare_main(argv: list[str]) -> None:
    """``chanmusic prepare``: build (or reuse) the cache for the given ``--data.*`` settings."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog="chanmusic prepare",
                            description="Build the prepared cache (EEG memmaps, windows, CLAP embeddings, mels) "
                                        "for the given data settings; a rerun with the same settings reuses it.")
    parser.add_argument("--config", action=ActionConfigFile, help="YAML with a data: section (other sections ignored)")
    parser.add_class_arguments(NMEDDataModule, "data")
    parser.add_argument("--model", type=dict, default={}, help="ignored (lets stage YAMLs be passed as --config)")
    parser.add_argument("--trainer", type=dict, default={}, help="ignored")
    parser.add_argument("--seed_everything", default=None, help="ignored")
    cfg = parser.parse_args(argv)
    init = parser.instantiate_classes(cfg)
    dm: NMEDDataModule = init.data
    _install_preparer()
    dm.prepare_data()
    print(f"[prepare] cache: {dm.cache_path()}")


def _setup_logging() -> None:
    """chanmusic's own messages to stderr (Lightning configures its own logger)."""
    log = logging.getLogger("chanmusic")
    if not log.handlers:
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("[chanmusic] %(message)s"))
        log.addHandler(h)
        log.setLevel(logging.INFO)
        log.propagate = False


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    _setup_logging()
    if argv and argv[0] in EXTRA_COMMANDS:
        import importlib

        mod, fn = EXTRA_COMMANDS[argv[0]].split(":")
        getattr(importlib.import_module(mod), fn)(argv[1:])
        return
    lightning_main(argv)


if __name__ == "__main__":
    main()

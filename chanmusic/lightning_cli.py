"""The configured LightningCLI: a stage and the NMED data module built from YAML configs, the way every command
builds them (``chanmusic fit|test|...`` through :mod:`chanmusic.cli`, the runner's worker, the run loader
:mod:`chanmusic.results.runs`).

It links the data module's facts into the encoder and the stage, stores data paths absolute (so a saved
``config.yaml`` works from any folder) and saves ``config.yaml`` without ever replacing another run's
(:class:`KeepRunConfig`). The subcommand hooks that resolve ``--ckpt_path`` live with the entry point.
"""
from __future__ import annotations

from pathlib import Path

from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from callbacks.finite import FiniteLossCheck
from chanmusic.core.errors import ProvenanceError
from datamodules.datamodule import NMEDDataModule

#: data settings that are paths: saved absolute in config.yaml, so a run can be reloaded from any folder
_DATA_PATHS = ("root", "audio_root", "cache_dir")


class KeepRunConfig(SaveConfigCallback):
    """Saves ``config.yaml`` in the run folder, but never replaces one of another run.

    An identical config (the subcommand's own ``ckpt_path`` / ``verbose`` aside: a resumed fit, a test in the fit's
    folder) is left as it is; a different one is a :class:`~chanmusic.core.errors.ProvenanceError`. A ``fit`` that is
    not a resume into a folder that already holds checkpoints is refused too.
    """

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.already_saved or not self.save_to_log_dir:
            return super().setup(trainer, pl_module, stage)
        path = Path(trainer.log_dir) / self.config_filename  # log_dir broadcasts
        verdict = _config_verdict(self, path, stage, trainer) if trainer.is_global_zero else None
        verdict = trainer.strategy.broadcast(verdict)
        if verdict is None:
            return super().setup(trainer, pl_module, stage)
        if verdict == "same":
            self.already_saved = True
            return None
        raise ProvenanceError(str(path.parent), verdict,
                              "give this run its own folder (drop --trainer.logger.init_args.version or choose a new "
                              "one), or resume the earlier fit with --ckpt_path last")


def _config_verdict(cb: SaveConfigCallback, path: Path, stage: str, trainer) -> str | None:
    """``None`` (write it), ``"same"`` (keep the existing file) or why the folder is another run's."""
    import yaml

    ckpts = sorted((path.parent / "checkpoints").glob("*.ckpt"))
    if stage == "fit" and not trainer.ckpt_path and ckpts:
        return (f"holds checkpoints of an earlier fit ({ckpts[0].name}, {len(ckpts)} in all); a new fit there "
                f"would overwrite them")
    if not path.is_file():
        return None
    skip = ("ckpt_path", "verbose")
    new = yaml.safe_load(cb.parser.dump(cb.config, skip_none=False)) or {}
    try:
        old = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        old = {}
    diff = _diff({k: v for k, v in old.items() if k not in skip}, {k: v for k, v in new.items() if k not in skip})
    if not diff:
        return "same"
    return (f"{path.name} holds another run's config (differs in {', '.join(diff[:4])}"
            f"{' …' if len(diff) > 4 else ''}); it is never overwritten")


def _diff(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


class StageCLI(LightningCLI):
    """LightningCLI with the data module's facts linked into the encoder and the stage."""

    def add_arguments_to_parser(self, parser) -> None:
        for fact in ("n_channels", "sfreq", "n_times", "ch_names"):
            parser.link_arguments(f"data.{fact}", f"model.init_args.encoder.init_args.{fact}", apply_on="instantiate")
        parser.link_arguments("data.clap_dim", "model.init_args.clap_dim", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        """Data paths absolute (the saved ``config.yaml`` then works from any folder)."""
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        data = cfg.get("data")
        init = data.get("init_args", data) if data is not None else None
        for key in _DATA_PATHS if init is not None else ():
            value = init.get(key)
            if value:
                init[key] = absolute_paths(value)


def absolute_paths(value):
    """A path setting made absolute: one folder, a list of them, or a mapping {dataset: folder} (a pool's roots)."""
    if isinstance(value, dict):
        return {k: absolute_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [absolute_paths(v) for v in value]
    return str(Path(str(value)).expanduser().absolute())


def build_cli(args: list[str] | None = None, run: bool = True, parser_kwargs: dict | None = None,
              cli_class: type[StageCLI] = StageCLI) -> StageCLI:
    """``cli_class`` (a :class:`StageCLI`) over any ``LightningModule`` stage and :class:`NMEDDataModule`, with
    :class:`KeepRunConfig` and the non-finite loss check; ``run=False`` only builds the model, data and trainer."""
    return cli_class(
        LightningModule, NMEDDataModule, subclass_mode_model=True, args=args, run=run,
        save_config_callback=KeepRunConfig, trainer_defaults={"callbacks": [FiniteLossCheck()]},
        parser_kwargs=parser_kwargs,
    )

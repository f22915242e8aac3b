"""The configured LightningCLI: a stage and the NMED data module built from YAML configs, the way every command
builds them (``chanmusic fit|test|...`` through :mod:`chanmusic.cli`, the runner's worker, the run loader
:mod:`chanmusic.results.runs`).

It links the data module's facts into the encoder and the stage, stores data paths absolute (so a saved
``config.yaml`` works from any folder) and saves ``config.yaml`` without ever replacing another run's
(:class:`KeepRunConfig`). The subcommand hooks that resolve ``--ckpt_path`` live with the entry point.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from jsonargparse import DefaultHelpFormatter
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from callbacks.finite import FiniteLossCheck
from chanmusic.core.errors import ProvenanceError
from chanmusic.core.options import unknown_option
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


#: packages whose classes ``--help`` lists as "known subclasses" (Lightning's own lists are left out)
_OWN_PACKAGES = ("chanmusic.", "encoders.", "datamodules.", "callbacks.")


class CompactHelpFormatter(DefaultHelpFormatter):
    """``--help`` with one sentence per argument (then its type and default), a one-line usage and only this
    project's classes among the "known subclasses": ``chanmusic fit --help`` stays a page, not 700 lines."""

    def __init__(self, prog: str, **kwargs) -> None:
        kwargs.setdefault("max_help_position", 36)
        kwargs.setdefault("width", max(100, shutil.get_terminal_size().columns - 2))  # a page, not 300 lines
        super().__init__(prog, **kwargs)

    def _format_usage(self, usage, actions, groups, prefix) -> str:
        return f"{self._prog.replace(' [options]', '')} [options]\n\n"

    def _format_action_invocation(self, action) -> str:
        opts = [o for o in action.option_strings if not o.endswith("+")]  # `--x+` (append) is in the type
        return ", ".join(opts) if opts else super()._format_action_invocation(action)

    def _get_help_string(self, action) -> str:
        full = super()._get_help_string(action)
        own = action.help or ""
        if not own or not full.startswith(own):
            return full
        first = re.split(r"(?<=\.)\s+(?=[A-Z`])", " ".join(own.split()), maxsplit=1)[0]
        suffix = _own_subclasses_only(full[len(own):])
        return first + suffix

    def _get_type_str(self, action) -> str | None:
        found = super()._get_type_str(action)
        return _short_types(found) if found else found


def _short_types(text: str) -> str:
    """``Optional[X]`` / ``Union[a, b]`` written the short way: ``X | null``, ``a | b``."""
    text = re.sub(r"Literal\[([^\[\]]*)\]", lambda m: "{" + ",".join(a.strip(" '") for a in m.group(1).split(","))
                  + "}", text)
    for _ in range(4):  # nested ones, innermost first
        new = re.sub(r"Optional\[([^\[\]]*(?:\[[^\[\]]*\])*[^\[\]]*)\]", r"\1 | null", text)
        new = re.sub(r"Union\[([^\[\]]*(?:\[[^\[\]]*\])*[^\[\]]*)\]",
                     lambda m: " | ".join(_split_top(m.group(1))), new)
        if new == text:
            break
        text = new
    return text


def _split_top(args: str) -> list[str]:
    """``"a, b[c, d], e"`` -> ``["a", "b[c, d]", "e"]``."""
    out, depth, cur = [], 0, ""
    for ch in args:
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return out + [cur.strip()]


def _own_subclasses_only(suffix: str) -> str:
    """The ``(type: ..., known subclasses: a, b)`` suffix with other packages' subclasses dropped."""
    m = re.search(r", known subclasses: ([^)]*)", suffix)
    if not m:
        return suffix
    kept = [c for c in m.group(1).split(", ") if c.startswith(_OWN_PACKAGES)]
    listing = f", known subclasses: {', '.join(kept)}" if kept else ""
    return suffix[:m.start()] + listing + suffix[m.end():]


class StageCLI(LightningCLI):
    """LightningCLI with the data module's facts linked into the encoder and the stage; unknown or abbreviated
    options are refused with the nearest valid name."""

    def parse_arguments(self, parser, args) -> None:
        try:
            super().parse_arguments(parser, args)
        except Exception as e:  # jsonargparse's ArgumentError (exit_on_error=False)
            sub = next((a for a in (args or []) if isinstance(a, str) and a in getattr(self, "_subcommand_parsers",
                                                                                          {})), None)
            parsers = [parser] + ([self._subcommand_parsers[sub]] if sub else [])
            better = unknown_option(str(e), (o for p in parsers for a in p._actions for o in a.option_strings))
            if better is None:
                raise
            raise better from e

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
    kwargs = {"prog": "chanmusic", "allow_abbrev": False, "formatter_class": CompactHelpFormatter,
              **(parser_kwargs or {})}
    return cli_class(
        LightningModule, NMEDDataModule, subclass_mode_model=True, args=args, run=run,
        save_config_callback=KeepRunConfig, trainer_defaults={"callbacks": [FiniteLossCheck()]},
        parser_kwargs=kwargs,
    )

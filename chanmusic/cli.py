"""The ``chanmusic`` console script: LightningCLI subcommands plus ``prepare`` (and others as they land).

    chanmusic --help | --version
    chanmusic prepare --data.root DIR [--data.* ...]
    chanmusic fit|validate|test|predict --config experiments/....yaml
    chanmusic compare | report | robustness ...

Errors end in one line (``chanmusic: error: <file/field>: <what> — <fix>``, :mod:`chanmusic.core.errors`); ``--debug``
or ``CHANMUSIC_DEBUG=1`` shows the traceback instead.
"""
from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

from chanmusic.core.errors import (InputError, ProvenanceError, debug_enabled, error_exit_code, error_line,
                              yaml_config_error)
from chanmusic.results.checkpoint_rule import earlier_best_checkpoint, earlier_last_checkpoint

# Lightning (and through it torchmetrics, torchvision, torch._dynamo: ~5 CPU-s) is imported only by the commands
# that train or prepare: `chanmusic --help`, `compare` (whose parent process only starts workers and writes the
# report) and `report` never pay for it. `ChanMusicCLI` and `NMEDDataModule` are built on first use (__getattr__).

# extra subcommands: name -> "module:function" taking argv (kept lazy so `--help` is fast)
EXTRA_COMMANDS: dict[str, str] = {
    "prepare": "chanmusic.cli:prepare_main",
    "compare": "chanmusic.runner.compare:main",
    "report": "chanmusic.report.main:main",
    "robustness": "chanmusic.evaluation.robustness.command:main",
}
#: every command, one line each: what `chanmusic --help` lists
COMMANDS: dict[str, str] = {
    "fit": "train a stage (--config experiments/....yaml); --ckpt_path last resumes",
    "validate": "score a stage on the validation windows",
    "test": "score trained weights on the test windows (--ckpt_path FILE | last | best); writes metrics.json",
    "predict": "generate audio from EEG with a reconstruction stage",
    "prepare": "build (or reuse) the prepared cache for the given --data.* settings",
    "compare": "the runner: every row of a spec over seeds, each with a no-music control (--profile demo, quick, full, predann, new_music, …)",
    "report": "tables, plots and the HTML report of a compare output folder",
    "robustness": "identification of trained runs with electrodes removed at test time",
}
#: subcommands whose parse errors raise (one line from main) instead of printing argparse's usage block
_RAISE_ON_PARSE_ERROR = {"exit_on_error": False}


_CLI_CLASS: list[type] = []


def _chanmusic_cli_class() -> type:
    """:class:`ChanMusicCLI`, defined on first use (it subclasses Lightning's CLI)."""
    if _CLI_CLASS:
        return _CLI_CLASS[0]
    from chanmusic.lightning_cli import StageCLI

    class ChanMusicCLI(StageCLI):
        """The entry point's LightningCLI: :class:`~chanmusic.lightning_cli.StageCLI` plus the ``--ckpt_path``
        rules of ``fit`` / ``test`` / ``predict`` (:mod:`chanmusic.results.checkpoint_rule`)."""

        def before_fit(self) -> None:
            """``--ckpt_path last`` resumes the newest ``last.ckpt`` of an earlier version of the run (see
            :func:`~chanmusic.results.checkpoint_rule.earlier_last_checkpoint`)."""
            cfg = self.config_init[self.subcommand]
            if cfg.get("ckpt_path") == "last":
                found = earlier_last_checkpoint(self.trainer)
                if found is not None:
                    logging.getLogger("chanmusic").info("--ckpt_path last: resuming from %s", found)
                    cfg["ckpt_path"] = str(found)

        def before_test(self) -> None:
            """``test`` scores trained weights only: ``--ckpt_path FILE``, ``last`` or ``best`` (found in the
            logger's earlier versions, as ``fit`` does), or a stage that brings its own
            (``test_without_checkpoint()``)."""
            cfg = self.config_init[self.subcommand]
            cfg["ckpt_path"] = resolve_test_checkpoint(self.trainer, self.model, cfg.get("ckpt_path"))
            if self.subcommand == "test":
                ckpt = cfg["ckpt_path"] or getattr(self.model, "aligned_checkpoint", None)
                check_test_provenance(self.datamodule, ckpt)

        def before_predict(self) -> None:
            """Predictions of an untrained model are refused as in ``test``."""
            cfg = self.config_init[self.subcommand]
            cfg["ckpt_path"] = resolve_test_checkpoint(self.trainer, self.model, cfg.get("ckpt_path"))

    ChanMusicCLI.__qualname__ = "ChanMusicCLI"  # found again by name (module __getattr__), e.g. when pickled
    _CLI_CLASS.append(ChanMusicCLI)
    return ChanMusicCLI


def __getattr__(name: str):
    """``ChanMusicCLI`` and ``NMEDDataModule``, imported on first use (see the note on Lightning above)."""
    if name == "ChanMusicCLI":
        return _chanmusic_cli_class()
    if name == "NMEDDataModule":
        from datamodules.datamodule import NMEDDataModule

        return NMEDDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_test_provenance(dm, ckpt: str | None) -> None:
    """The split and CLAP checks of :class:`~chanmusic.evaluation.provenance.ProvenanceCallback`, run before the
    trainer starts, so a refused ``test`` writes nothing (no logger folder, events or ``hparams.yaml``)."""
    from chanmusic.evaluation.provenance import ProvenanceCallback

    if dm is None or not ckpt or not Path(ckpt).is_file() or not hasattr(dm, "prepare_data"):
        return
    dm.prepare_data()
    dm.setup("test")
    if getattr(dm, "split", None) is not None:
        ProvenanceCallback._check(dm, Path(ckpt))


def resolve_test_checkpoint(trainer, model, ckpt_path: str | None) -> str | None:
    """The checkpoint ``test`` loads: a file, ``last`` / ``best`` resolved like ``fit`` does; ``None`` only for a
    model whose ``test_without_checkpoint()`` says it holds its weights. Raises ``ProvenanceError`` otherwise."""
    log = logging.getLogger("chanmusic")
    if ckpt_path in ("last", "best"):
        found = earlier_last_checkpoint(trainer) if ckpt_path == "last" else earlier_best_checkpoint(trainer)
        if found is None:
            root = getattr(trainer.logger, "root_dir", None) or trainer.default_root_dir
            raise ProvenanceError("--ckpt_path", f"{ckpt_path}: no {ckpt_path} checkpoint of an earlier fit under "
                                  f"{root}", "pass the checkpoint file (RUN/checkpoints/*.ckpt) or the fit's "
                                  "logger settings (--config RUN/config.yaml)")
        log.info("--ckpt_path %s: testing %s", ckpt_path, found)
        ckpt_path = str(found)
    if ckpt_path:
        if not Path(ckpt_path).is_file():
            raise ProvenanceError("--ckpt_path", f"{ckpt_path} does not exist",
                                  "pass a checkpoint file, or last / best")
        from chanmusic.core.checkpoints import check_fits

        check_fits(model, ckpt_path, f"--ckpt_path {ckpt_path}")
        return ckpt_path
    own = getattr(model, "test_without_checkpoint", None)
    if callable(own) and own():
        return None
    raise ProvenanceError("--ckpt_path", "test needs trained weights, and none were given (it would score an "
                          "untrained model)", "pass --ckpt_path RUN/checkpoints/<file>.ckpt, or last / best with the "
                          "fit's config")


def import_components() -> None:
    """Import every stage and encoder module, so the parser knows them by short name (``--model AlignModule``,
    ``--model.encoder ChannelOrientedEncoder``): jsonargparse resolves a short name among the imported subclasses."""
    import importlib
    import pkgutil

    import chanmusic.stages
    import encoders

    for pkg in (chanmusic.stages, encoders):
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{pkg.__name__}.{info.name}")


def lightning_main(args: list[str] | None = None, run: bool = True, parser_kwargs: dict | None = None
                   ) -> ChanMusicCLI:
    """The LightningCLI of ``chanmusic fit|validate|test|predict`` (``run=False``: build it, run nothing)."""
    from chanmusic.lightning_cli import build_cli

    import_components()
    return build_cli(args, run, parser_kwargs, _chanmusic_cli_class())


def prepare_main(argv: list[str]) -> None:
    """``chanmusic prepare``: build (or reuse) the cache for the given ``--data.*`` settings."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    from datamodules.datamodule import NMEDDataModule

    parser = ArgumentParser(prog="chanmusic prepare", exit_on_error=False, allow_abbrev=False,
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
    dm.prepare_data()
    print(f"[prepare] cache: {dm.cache_path()}")


def check_checkpoint_arg(argv: list[str]) -> None:
    """``--ckpt_path FILE`` exists and opens with ``weights_only=True`` (else one line naming it, before Lightning's
    own loading turns it into a traceback); ``last`` / ``best`` are resolved later."""
    from chanmusic.core.checkpoints import probe_checkpoint

    for i, a in enumerate(argv):
        value = a.split("=", 1)[1] if a.startswith("--ckpt_path=") else (argv[i + 1] if a == "--ckpt_path" and
                                                                           i + 1 < len(argv) else None)
        if value in (None, "last", "best", "null", "None", ""):
            continue
        if not Path(value).expanduser().is_file():
            what = not_a_file(Path(value).expanduser()) or f"{value} does not exist"
            raise ProvenanceError("--ckpt_path", what, "pass a checkpoint file, or last / best")
        probe_checkpoint(Path(value).expanduser())


def not_a_file(path: Path) -> str | None:
    """What ``path`` is when it exists but is no regular file (a FIFO, a device, a folder), else None."""
    import stat

    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode) else
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else None)
    return f"{path} is {kind}, not a regular file" if kind else None


def check_config_files(argv: list[str]) -> None:
    """Every ``--config FILE`` exists and is valid YAML (else an error naming the file, line and column)."""
    for i, a in enumerate(argv):
        value = a.split("=", 1)[1] if a.startswith("--config=") else (argv[i + 1] if a == "--config" and
                                                                        i + 1 < len(argv) else None)
        if value is None or "\n" in value or value.lstrip().startswith(("{", "[")):
            continue  # inline YAML (the runner and the run loader pass configs that way)
        path = Path(value).expanduser()
        if not path.is_file():
            raise InputError(f"--config {value}", not_a_file(path) or "no such file",
                             "check the path (relative to the current folder)")
        err = yaml_config_error(path)
        if err:
            raise err


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (a redirected or captured stream included)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _setup_logging() -> None:
    """chanmusic's own messages to stderr (Lightning configures its own logger)."""
    log = logging.getLogger("chanmusic")
    if not log.handlers:
        h = _StderrHandler()
        h.setFormatter(logging.Formatter("[chanmusic] %(message)s"))
        log.addHandler(h)
        log.setLevel(logging.INFO)
        log.propagate = False


def main(argv: list[str] | None = None) -> None:
    """The console script. Project errors (and any other failure) end in ONE line on stderr,
    ``chanmusic: error: <file/field>: <what> — <fix>``, exit code 2 for bad input (1 for a failed run); the
    traceback only with ``--debug`` or ``CHANMUSIC_DEBUG=1``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_enabled(argv)
    argv = [a for a in argv if a != "--debug"]
    _setup_logging()
    try:
        _dispatch(argv)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - every failure becomes one line (or the traceback with --debug)
        if debug:
            raise
        print(error_line(e), file=sys.stderr)
        sys.exit(error_exit_code(e))


def top_level_help() -> str:
    """``chanmusic --help``: every command with one line, and where each command's options are listed."""
    width = max(len(c) for c in COMMANDS) + 2
    lines = ["usage: chanmusic <command> [options]   (chanmusic <command> --help lists a command's options)", "",
             "EEG-to-music reconstruction: NMED readers, EEG encoders aligned to CLAP, AudioLDM generation.", "",
             "commands:"]
    lines += [f"  {name:<{width}}{what}" for name, what in COMMANDS.items()]
    lines += ["", "options:", f"  {'-h, --help':<{width + 4}}show this list and exit",
              f"  {'--version':<{width + 4}}print the version and exit",
              f"  {'--debug':<{width + 4}}show the traceback of an error instead of one line"]
    return "\n".join(lines)


def _dispatch(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print(top_level_help())
        return
    if argv[0] == "--version":
        from chanmusic import __version__

        print(f"chanmusic {__version__}")
        return
    if argv[0] not in COMMANDS:
        import difflib

        near = difflib.get_close_matches(argv[0], list(COMMANDS), n=1)
        raise InputError("command line", f"{argv[0]!r} is not a command",
                         f"did you mean {near[0]}?" if near else f"use one of {', '.join(COMMANDS)}")
    if argv and argv[0] in EXTRA_COMMANDS:
        import importlib

        if argv[0] == "prepare":
            check_config_files(argv[1:])
        mod, fn = EXTRA_COMMANDS[argv[0]].split(":")
        getattr(importlib.import_module(mod), fn)(argv[1:])
        return
    check_config_files(argv)
    check_checkpoint_arg(argv)
    with warnings.catch_warnings():
        # main() hands LightningCLI its argv as `args`, which it warns about when sys.argv holds them too
        warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended to run.*")
        try:
            lightning_main(argv, parser_kwargs=_RAISE_ON_PARSE_ERROR)
        except Exception as e:  # noqa: BLE001 - a misspelled key inside a --config YAML names that YAML
            where = config_file_of_bad_key(argv, e)
            if where is None:
                raise
            raise InputError(where[0], f"{where[1]} is not an option of `chanmusic {argv[0]}`",
                             f"check its spelling in that file (`chanmusic {argv[0]} --help` lists the options)") from e


def config_file_of_bad_key(argv: list[str], exc: BaseException) -> tuple[str, str] | None:
    """``(YAML file, dotted key)`` when a parse error rejects a key that a ``--config`` file of ``argv`` holds (the
    last such file: later ones override earlier ones), else None (the key came from the command line)."""
    import re

    m = re.search(r"does not accept option '([^']+)'|[Kk]ey \"([^\"]+)\"", str(exc))
    if m is None:
        return None
    key = m.group(1) or m.group(2)
    files = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"]
    for f in reversed(files):
        if _holds_key(f, key):
            return f, key
    return None


def _holds_key(path: str, key: str) -> bool:
    """Whether the YAML at ``path`` has ``key``'s last part as a key under its first section (a null value too)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).expanduser().read_text()) or {}
    except (OSError, yaml.YAMLError):
        return False
    parts = key.split(".")
    sec = data.get(parts[0]) if isinstance(data, dict) else None
    sec = sec.get("init_args", sec) if isinstance(sec, dict) and parts[-1] not in sec else sec
    return isinstance(sec, dict) and parts[-1] in sec


if __name__ == "__main__":
    main()

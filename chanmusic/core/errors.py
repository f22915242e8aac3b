"""The project's error types and the one line the CLI prints for them.

Every error a user can fix is raised as a :class:`ChanmusicError` (or one of the lower layers' own types,
which carry a message already in the same form) and printed by ``chanmusic`` as ONE line::

    chanmusic: error: <file/field>: <what> — <fix>

with exit code 2 (:data:`EXIT_BAD_INPUT`) for bad input and 1 (:data:`EXIT_FAILED`) for a run that failed
on its own (a non-finite loss). The traceback is shown only with ``--debug`` or ``CHANMUSIC_DEBUG=1``.

The lower layers' own error types (checkpoint, cache, NMED format, data setting, non-finite loss) derive from
:class:`FormattedError` and are formatted the same way; so are parse errors (the key they name), missing paths, and ``ValueError`` raised by the project's own code
(its older convention). Anything else is one line too, marked "unexpected", with the hint to rerun with
``--debug``. :func:`error_line` finds a project error anywhere in the exception's chain (a stage may wrap it).

Raise, e.g.::

    raise InputError("--config x.yaml", "no such file", "check the path (relative to the current folder)")
"""
from __future__ import annotations

import os

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
DASH = "—"
#: the fix of an error none of the project's rules names (``error_line``'s last resort)
UNEXPECTED = "unexpected; rerun with --debug (or CHANMUSIC_DEBUG=1) for the traceback"
#: a missing or unreadable path the user gave: bad input, its message names the path
_PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


class ChanmusicError(Exception):
    """An error the user can act on: ``where`` (file or field), ``what`` went wrong, the ``fix``."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, where: str, what: str, fix: str = "") -> None:
        self.where, self.what, self.fix = str(where), str(what), str(fix)
        super().__init__(self.line())

    def line(self) -> str:
        """``<where>: <what> — <fix>`` (no prefix, one line)."""
        text = f"{self.where}: {self.what}" if self.where else self.what
        return one_line(f"{text} {DASH} {self.fix}" if self.fix else text)


class FormattedError(Exception):
    """Base of the lower layers' own error types (checkpoint, cache, NMED format, data setting, non-finite loss):
    their message is already ``<where>: <what> — <fix>``; ``exit_code`` says bad input (2) or a failed run (1)."""

    exit_code = EXIT_BAD_INPUT


class InputError(ChanmusicError, ValueError):
    """A command-line value or config field is out of range, inconsistent or unsupported."""


class DataError(ChanmusicError, ValueError):
    """Input data (EEG, audio, cache) would give meaningless results."""


class RunsFailedError(ChanmusicError):
    """Some runs of a comparison failed: the finished ones and the report are kept, the command still exits 1."""

    exit_code = EXIT_FAILED


class ProvenanceError(ChanmusicError):
    """A run would mix things that do not belong together (another split, no trained weights, an overwrite)."""


def one_line(text: str) -> str:
    """Collapse whitespace runs (newlines included) to single spaces."""
    return " ".join(str(text).split())


def known_error(exc: BaseException) -> bool:
    """Whether ``exc`` is one of the project's user-facing errors (any layer)."""
    return isinstance(exc, (ChanmusicError, FormattedError))


def exit_code(exc: BaseException) -> int:
    """2 for bad input, 1 for a failed run (the error's ``exit_code`` attribute when it has one)."""
    return int(getattr(exc, "exit_code", EXIT_BAD_INPUT))


def format_error(exc: BaseException) -> str:
    """The one line printed for ``exc``: ``chanmusic: error: <file/field>: <what> — <fix>``."""
    text = exc.line() if isinstance(exc, ChanmusicError) else with_dash(one_line(str(exc) or type(exc).__name__))
    return f"chanmusic: error: {text}"


def with_dash(text: str) -> str:
    """Older messages say ``<what>. <Fix>`` or ``<what>: <fix>``: the first sentence break becomes `` — ``."""
    import re

    if DASH in text:
        return text
    return re.sub(r"\.\s+(?=[A-Z(`])|;\s+(?=(?:use|set|pass|run|put|delete|point|check|re-)\b)", f" {DASH} ",
                  text, count=1)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from / during, outermost first."""
    out: list[BaseException] = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _argument_error(exc: BaseException) -> bool:
    import argparse

    return isinstance(exc, argparse.ArgumentError) or type(exc).__name__ == "ArgumentError"


def _parse_error_line(exc: BaseException) -> str:
    """jsonargparse's (multi-line) parse error as ``<--key>: <what> — <fix>``."""
    import re

    text = one_line(str(exc))
    m = re.search(r'(?:Parser key|Key) "([^"]+)":\s*(.*)', text)
    if m:
        where, what = f"--{m.group(1)}", m.group(2)
    else:
        m = re.search(r"[Uu]nrecognized arguments: (.*)", text)
        where, what = ("command line", f"unrecognized arguments: {m.group(1)}") if m else ("command line", text)
    what = what.replace("<class '", "").replace("'>", "")
    return f"{where}: {what} {DASH} see `chanmusic <command> --help` for the accepted options and types"


def _project_value_error(exc: BaseException) -> bool:
    """A ``ValueError`` raised by the project's own code (its messages name the setting: the convention before
    :class:`ChanmusicError`), not by a library."""
    import traceback
    from pathlib import Path

    if not isinstance(exc, ValueError) or exc.__traceback__ is None:
        return False
    frames = traceback.extract_tb(exc.__traceback__)
    root = Path(__file__).resolve().parents[2]
    last = Path(frames[-1].filename).resolve() if frames else None
    return bool(last and root in last.parents and "site-packages" not in last.parts and ".venv" not in last.parts)


def _class_init_error(exc: BaseException) -> str | None:
    """A class the config names refused its arguments (e.g. an encoder's ``ValueError`` from ``__init__``), which
    jsonargparse reports as "Does not validate against any of the Union subtypes" with one line per alternative:
    ``<model|data|config>: <the class's own message>``, or None for any other error."""
    import re

    raw = str(exc)
    if "Does not validate against any of the Union subtypes" not in raw:
        return None
    head, _, rest = raw.partition("Errors:")
    found = [e.strip() for e in re.findall(r"^\s*- (.+)$", rest, re.M)]
    own = [e for e in found if not e.startswith("Expected a <class 'NoneType'>")]
    if not own:
        return None
    where = "model" if "LightningModule" in head else "data" if "DataModule" in head else "config"
    return f"{where}: {own[0]}"


def error_line(exc: BaseException) -> str:
    """The one line ``chanmusic`` prints for any exception: the project's own error when one is in the chain
    (a stage may wrap it), a parse error's key, else the exception's type and first words."""
    chain = _chain(exc)
    for e in chain:
        if known_error(e):
            return format_error(e)
    for e in chain:
        if _argument_error(e):
            return f"chanmusic: error: {_parse_error_line(e)}"
    full = _disk_full(exc)
    if full is not None:
        return (f"chanmusic: error: {_written_path(full)}: no space left on device (errno {full.errno}) {DASH} free "
                f"space there (or point the output elsewhere) and rerun the same command: finished work is kept, "
                f"no half-written file is used, and a fit goes on with --ckpt_path last")
    if isinstance(exc, KeyboardInterrupt):
        return "chanmusic: error: interrupted"
    for e in chain:
        refused = _class_init_error(e)
        if refused:
            return f"chanmusic: error: {with_dash(one_line(refused))}" + ("" if DASH in refused else
                                                                         f" {DASH} check the setting it names")
    text = one_line(str(exc))
    if isinstance(exc, _PATH_ERRORS):
        text = with_dash(text)
        return f"chanmusic: error: {text}" + ("" if DASH in text else f" {DASH} check the path")
    if _project_value_error(exc):
        text = with_dash(text)
        return f"chanmusic: error: {text}" + ("" if DASH in text else f" {DASH} check the setting it names")
    return f"chanmusic: error: {type(exc).__name__}: {text[:500] or 'no message'} {DASH} {UNEXPECTED}"


def _disk_full(exc: BaseException) -> OSError | None:
    """The ``OSError`` of a full disk or quota (ENOSPC / EDQUOT) in ``exc``'s chain, else None."""
    import errno

    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return e
    return None


def _written_path(e: OSError) -> str:
    """The file a failed write was writing: the error's own ``filename``, else the innermost frame's path argument
    (Lightning's ``_atomic_save(checkpoint, filepath)``, a ``path`` / ``urlpath``), else "the output folder"."""
    if e.filename:
        return str(e.filename)
    frames = []
    tb = e.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for name in ("filepath", "urlpath", "path", "filename"):
            value = frame.f_locals.get(name)
            if isinstance(value, (str, os.PathLike)) and str(value):
                return str(value)
    return "the output folder"


def is_unexpected(exc: BaseException) -> bool:
    """Whether :func:`error_line` has no rule for ``exc`` (its line ends in :data:`UNEXPECTED`)."""
    return error_line(exc).endswith(UNEXPECTED)


def error_exit_code(exc: BaseException) -> int:
    """Exit code for ``exc``: the project's error's own (2 bad input, 1 failed run), 2 for a parse error,
    130 for Ctrl-C, 1 otherwise."""
    chain = _chain(exc)
    for e in chain:
        if known_error(e):
            return exit_code(e)
    if (any(_argument_error(e) or _class_init_error(e) for e in chain) or isinstance(exc, _PATH_ERRORS)
            or _disk_full(exc) is not None
            or _project_value_error(exc)):
        return EXIT_BAD_INPUT
    return 130 if isinstance(exc, KeyboardInterrupt) else EXIT_FAILED


def yaml_config_error(path) -> "InputError | None":
    """``InputError`` naming ``path``, line and column when it is not valid YAML (or not a mapping), else None."""
    import yaml
    from pathlib import Path

    try:
        data = yaml.safe_load(Path(path).read_text())
    except UnicodeDecodeError:
        return InputError(str(path), "not a text file", "pass a YAML config file")
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e)
        return InputError(where, f"invalid YAML ({one_line(problem)})", "fix the YAML syntax at that line")
    if data is not None and not isinstance(data, dict):
        return InputError(str(path), f"a config must be a mapping of sections, not a {type(data).__name__}",
                          "write it as `data:` / `model:` / `trainer:` sections")
    return None


def debug_enabled(argv: list[str] | None = None) -> bool:
    """``--debug`` in ``argv`` or ``CHANMUSIC_DEBUG`` set to a true value."""
    if argv and "--debug" in argv:
        return True
    return os.environ.get("CHANMUSIC_DEBUG", "").strip().lower() not in ("", "0", "false", "no")

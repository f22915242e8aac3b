"""The project's error types and the one line the CLI prints for them.

Every error a user can fix is raised as a :class:`ChanmusicError` (or one of the lower layers' own types,
which carry a message already in the same form) and printed by ``chanmusic`` as ONE line::

    chanmusic: error: <file/field>: <what> — <fix>

with exit code 2 (:data:`EXIT_BAD_INPUT`) for bad input and 1 (:data:`EXIT_FAILED`) for a run that failed
on its own (a non-finite loss). The traceback is shown only with ``--debug`` or ``CHANMUSIC_DEBUG=1``.

``encoders``, ``datamodules`` and ``callbacks`` import nothing of ``chanmusic``; their errors
(:class:`encoders.weights.CheckpointError`, :class:`datamodules.nmed.recording.NMEDFormatError`,
:class:`datamodules.cache.CacheError`, :class:`callbacks.finite.NonFiniteLossError`) are recognised here by
:func:`known_error` and formatted the same way.

Raise, e.g.::

    raise InputError("--data.clip", "must be > 0 (got 0)", "pass a positive clip in robust-SD units, e.g. 20")
"""
from __future__ import annotations

import os

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
DASH = "—"


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


class InputError(ChanmusicError, ValueError):
    """A command-line value or config field is out of range, inconsistent or unsupported."""


class DataError(ChanmusicError, ValueError):
    """Input data (EEG, audio, cache) would give meaningless results."""


class ProvenanceError(ChanmusicError):
    """A run would mix things that do not belong together (another split, no trained weights, an overwrite)."""


class UnsafeFileError(ChanmusicError):
    """A file would need arbitrary code to load (a pickle with objects outside the allow-list)."""


class TrainingFailed(ChanmusicError):
    """A run stopped because its numbers went wrong (NaN/Inf loss)."""

    exit_code = EXIT_FAILED


def one_line(text: str) -> str:
    """Collapse whitespace runs (newlines included) to single spaces."""
    return " ".join(str(text).split())


def known_error(exc: BaseException) -> bool:
    """Whether ``exc`` is one of the project's user-facing errors (any layer)."""
    return isinstance(exc, _known_types())


def _known_types() -> tuple[type, ...]:
    types: list[type] = [ChanmusicError]
    try:
        from encoders.weights import CheckpointError
        types.append(CheckpointError)
    except ImportError:  # pragma: no cover - the package is always installed together
        pass
    try:
        from datamodules.cache import CacheError
        from datamodules.nmed.recording import NMEDFormatError
        types += [CacheError, NMEDFormatError]
    except ImportError:  # pragma: no cover
        pass
    try:
        from callbacks.finite import NonFiniteLossError
        types.append(NonFiniteLossError)
    except ImportError:  # callbacks.finite not merged yet
        pass
    return tuple(types)


def exit_code(exc: BaseException) -> int:
    """2 for bad input, 1 for a failed run (the error's ``exit_code`` attribute when it has one)."""
    return int(getattr(exc, "exit_code", EXIT_BAD_INPUT))


def format_error(exc: BaseException) -> str:
    """The one line printed for ``exc``: ``chanmusic: error: <file/field>: <what> — <fix>``."""
    text = exc.line() if isinstance(exc, ChanmusicError) else one_line(str(exc) or type(exc).__name__)
    return f"chanmusic: error: {text}"


def debug_enabled(argv: list[str] | None = None) -> bool:
    """``--debug`` in ``argv`` or ``CHANMUSIC_DEBUG`` set to a true value."""
    if argv and "--debug" in argv:
        return True
    return os.environ.get("CHANMUSIC_DEBUG", "").strip().lower() not in ("", "0", "false", "no")

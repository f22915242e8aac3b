"""Command-line options are spelled out: a parser that refuses abbreviations and names the nearest valid option.

argparse accepts ``--seed 3`` for ``--seeds 3`` unless told not to; a typo should be an error instead. The
LightningCLI commands do the same through :func:`unknown_option` (``chanmusic.lightning_cli``).
"""
from __future__ import annotations

import argparse
import difflib
import re
from typing import Iterable, NoReturn

from chanmusic.core.errors import InputError


def unknown_option(message: str, known: Iterable[str]) -> InputError | None:
    """The error for a parser's "unrecognized arguments: --x ..." message, naming the nearest of ``known``
    (``None`` for any other message)."""
    m = re.search(r"nrecognized arguments: (--?[^\s=]+)", message)
    if not m:
        return None
    bad = m.group(1)
    near = difflib.get_close_matches(bad, sorted(set(known)), n=1, cutoff=0.6)
    fix = f"did you mean {near[0]}?" if near else "see --help for the accepted options"
    return InputError("command line", f"unknown option {bad} (options are never abbreviated)", fix)


class StrictArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` without abbreviations; an unknown option raises :class:`InputError` naming the
    nearest valid one (one line, exit 2, from the console script)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        err = unknown_option(message, (o for a in self._actions for o in a.option_strings))
        if err is not None:
            raise err
        super().error(message)

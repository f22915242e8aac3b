"""Settings renamed in a release: the old name is still read for one release, with a one-line warning naming the new.

A class keeps the old name as a keyword argument defaulting to ``None`` ("not given") and passes both values here.
"""
from __future__ import annotations

import logging
from typing import Any

__all__ = ["renamed"]

log = logging.getLogger("chanmusic")


def renamed(where: str, old: str, new: str, old_value: Any, new_value: Any, new_default: Any) -> Any:
    """The value of setting ``new``: ``new_value``, or ``old_value`` when the old name was given (not ``None``),
    with the warning ``<where>.<old> → <where>.<new>``. Both given with different values is an error."""
    if old_value is None:
        return new_value
    if new_value != new_default and new_value != old_value:
        raise ValueError(f"{where}.{old}: renamed {new}, and both are given ({old_value!r}, {new_value!r}) — "
                         f"keep {new} only")
    log.warning("%s.%s is deprecated → %s.%s (the old name is read until the next release)", where, old, where, new)
    return old_value

"""The checkpoint steps a row's runs were scored at, in words (the table's note and the console's verdicts)."""
from __future__ import annotations

from typing import Any


def steps_text(steps: dict[str, dict[Any, int]]) -> str:
    """``250 (music and control)`` when music and control of every replicate (seed, fold) were scored at the same
    step; replicates may differ (each seed its own split, so its own number of training windows): ``96–100 (music
    = control in every seed)``. Otherwise each arm's steps and a warning."""
    music, control = steps.get("music") or {}, steps.get("control") or {}
    every = sorted(set(music.values()) | set(control.values()))
    if music and control and music == control:
        if len(every) == 1:
            return f"{every[0]} (music and control)"
        return f"{every[0]}–{every[-1]} (music = control in every seed)"
    return ", ".join(f"{k} {sorted(set(v.values()))}" for k, v in steps.items()) + (
        " — UNEQUAL steps: music and control of a seed were not scored alike" if music and control else "")

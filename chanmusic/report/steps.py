"""The checkpoint steps a row's runs were scored at, in words (the table's note and the console's verdicts)."""
from __future__ import annotations


def steps_text(steps: dict[str, list[int]]) -> str:
    """``250 (music and control)`` when every run of the row was scored at one step, else each arm's steps with
    a warning (the checkpoint rule scores both arms at the last step of one budget)."""
    every = {s for v in steps.values() for s in v}
    if len(every) == 1 and len(steps) == 2:
        return f"{every.pop()} (music and control)"
    return ", ".join(f"{k} {sorted(set(v))}" for k, v in steps.items()) + (
        " — UNEQUAL steps: music and control were not scored alike" if len(every) > 1 else "")

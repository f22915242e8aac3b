"""What the paper row actually ran (readout, channel gain, dropout, crops), read from its run's saved settings.

The note under the tables is derived from the first seed's ``hparams.yaml`` / ``config.yaml`` (alignment) and
its pretraining run's ``hparams.yaml``, never from what the YAMLs in the repository say today."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from chanmusic.report.rows import RowResult
from chanmusic.results.metrics_file import read_json

__all__ = ["recipe_note"]


def _yaml(p: Path) -> dict[str, Any]:
    try:
        d = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return d if isinstance(d, dict) else {}


def _encoder_args(config: dict[str, Any]) -> dict[str, Any]:
    enc = ((config.get("model") or {}).get("init_args") or {}).get("encoder") or {}
    return enc.get("init_args") or {}


def _setting(hp: dict[str, Any], name: str, old: str) -> Any:
    """A saved setting by its name, or by its name before the rename (runs of the earlier release)."""
    return hp.get(name, hp.get(old))


def recipe_note(spec: dict, results: list[RowResult]) -> str | None:
    """One line saying which readout, channel gain, channel dropout and pretraining crops the reference row
    (``spec["reference_row"]``) used, or ``None`` when it has no finished run to read."""
    name = spec.get("reference_row")
    row = next((r for r in results if r.name == name and r.run_dirs), None)
    if row is None:
        return None
    run = row.run_dirs[0]
    status = read_json(run / "status.json") or {}
    steps = status.get("steps") or {}
    align_dir = Path((steps.get("align") or {}).get("dir") or run / "align")
    hp = _yaml(align_dir / "hparams.yaml")
    if not hp:
        return None
    enc = _encoder_args(_yaml(align_dir / "config.yaml"))
    parts = [f"head `{hp.get('head')}` over `{hp.get('readout') or 'its default source'}` (present tokens only)"]
    if enc.get("channel_gain"):
        parts.append(f"a learned gain per electrode before the mean (init 1 ± {enc.get('channel_gain_std')}, "
                     f"{enc.get('channel_gain_lr_scale')}× lr)")
    parts.append(f"alignment channel dropout {hp.get('channel_dropout')} (`{hp.get('channel_dropout_mode')}`)")
    weights = _setting(hp, "init_from_encoder", "init_encoder_weights")
    parts.append(f"encoder weights: {weights if _setting(hp, 'init_from', 'init_encoder_from') else 'random'}")
    pre_dir = (steps.get("pretrain") or {}).get("dir")
    pre = _yaml(Path(pre_dir) / "pretrain" / "hparams.yaml") if pre_dir else {}
    if pre:
        crops = "resized (time-stretched)" if pre.get("crop_resize") else "native-rate"
        parts.append(f"pretraining: {crops} crops, student channel drop "
                     f"{_setting(pre, 'channel_dropout', 'student_channel_drop')} "
                     f"(`{_setting(pre, 'channel_dropout_mode', 'channel_drop_mode')}`)")
    return f"**{row.label}** ran: " + "; ".join(parts) + " (from its run's saved settings; docs/model.md)."

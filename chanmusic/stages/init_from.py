"""What a stage's ``init_from`` reads (safe loading itself lives in ``chanmusic.core.checkpoints``).

The kinds of weights a run starts from (docs/stages.md):

- a **pretraining checkpoint** (``PretrainModule``, ``LabramPretrainModule``): two encoders, named in
  ``checkpoint["chanmusic_encoders"]`` (``{"student": "encoder.", "teacher": "teacher_encoder."}``); alignment loads
  the **teacher** by default (``init_from_encoder``), the EMA teacher DINO evaluates (the authors' code loads the
  student) — :func:`load_encoder_weights`;
- an **aligned checkpoint** (alignment / EEG2Mel): one encoder (``encoder.*``, named ``"aligned"``) and its head
  (``head.*``); alignment reads its encoder, reconstruction the whole aligned model — :func:`read_aligned`,
  :func:`load_aligned`;
- **published weights** of a foundation model: the encoder's own ``init_from`` (``encoders.pretrained_sources``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from chanmusic.core.checkpoints import CheckpointError, load_strict, safe_load, state_dict_of
from chanmusic.results.runs import encoder_from_config, read_checkpoint, run_config_of

__all__ = ["check_init_split", "CheckpointError", "load_strict", "safe_load", "state_dict_of", "load_encoder_weights",
           "checkpoint_encoders", "ENCODER_CHOICES", "load_init_from", "ENCODER_SOURCES", "AlignedCheckpoint", "read_aligned",
           "load_aligned"]

ENCODER_CHOICES = ("teacher", "student")
log = logging.getLogger("chanmusic")
GAIN_PREFIX = "channel_gain."  # encoders.token_gain.TokenGain: alignment-only, absent from pretraining checkpoints
SKIP_PREFIX = "linear_skip."  # encoders.token_skip.TokenLinearSkip: alignment-only as well
ALIGNMENT_ONLY = (GAIN_PREFIX, SKIP_PREFIX)


def checkpoint_encoders(ckpt: Any) -> dict[str, str]:
    """``{name: key prefix}`` of the encoders a loaded checkpoint holds: its ``chanmusic_encoders`` entry, else
    inferred from the keys (``teacher_encoder.*`` -> teacher, ``encoder.*`` -> student if a teacher is beside
    it, else ``aligned``)."""
    if isinstance(ckpt, dict) and isinstance(ckpt.get("chanmusic_encoders"), dict):
        return dict(ckpt["chanmusic_encoders"])
    keys = state_dict_of(ckpt).keys()
    has_teacher = any(k.startswith("teacher_encoder.") for k in keys)
    names: dict[str, str] = {}
    if any(k.startswith("encoder.") for k in keys):
        names["student" if has_teacher else "aligned"] = "encoder."
    if has_teacher:
        names["teacher"] = "teacher_encoder."
    return names


def load_encoder_weights(encoder: nn.Module, path: str | Path, which: str = "teacher") -> str:
    """Initialise ``encoder`` (strict) from one encoder of a checkpoint; returns the key prefix used.

    ``which``: ``"teacher"`` (default) or ``"student"`` of a pretraining checkpoint. A checkpoint with a single
    encoder (an alignment run: ``"aligned"``) loads that one whatever ``which`` says, since it has no choice.
    """
    if which not in ENCODER_CHOICES:
        raise CheckpointError(f"model.init_from_encoder: {which!r} is not one of {ENCODER_CHOICES}")
    ckpt = safe_load(path)
    names = checkpoint_encoders(ckpt)
    if not names:
        sd = state_dict_of(ckpt)
        raise CheckpointError(f"{path}: no 'encoder.*' weights (keys start with "
                              f"{sorted({k.split('.')[0] for k in sd})[:8]}) — pass a pretraining or alignment "
                              f"checkpoint")
    if which in names:
        prefix = names[which]
    elif set(names) == {"aligned"}:
        prefix = names["aligned"]
    else:
        raise CheckpointError(f"{path}: no {which} encoder (it holds {sorted(names)}) — set "
                              f"model.init_from_encoder to one of them")
    sd = state_dict_of(ckpt)
    sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    own = encoder.state_dict()
    pretraining = prefix != names.get("aligned")  # an aligned encoder must bring every weight it used
    fresh = [k for k in own if pretraining and k.startswith(ALIGNMENT_ONLY) and k not in sub]
    for k in fresh:  # a gain / skip the checkpoint's encoder did not have (pretraining reads the CLS, which it does
        sub[k] = own[k]  # not touch): it keeps its own initialisation (encoders.token_gain)
    if fresh:
        log.info("%s: no %s in the checkpoint; it keeps its initialisation", path, ", ".join(fresh))
    load_strict(encoder, sub, str(path))
    return prefix


def load_init_from(encoder: nn.Module, init_from: str | None, init_from_encoder: str, freeze_encoder: bool) -> None:
    """Initialise ``encoder`` from ``init_from`` (a pretraining or an aligned checkpoint; ``init_from_encoder``
    picks the pretraining run's teacher or student); a frozen encoder needs weights from somewhere."""
    # an encoder that loaded its own weights (published weights: its init_from) says so with ``weights_source``
    if freeze_encoder and not init_from and not getattr(encoder, "weights_source", None):
        raise ValueError("model.freeze_encoder: true with no weights to freeze (init_from is empty) — "
                         "pass --model.init_args.init_from CKPT, or set freeze_encoder: false")
    if init_from:
        load_encoder_weights(encoder, init_from, init_from_encoder)


ENCODER_SOURCES = ("auto", "config", "checkpoint")  #: where reconstruction's encoder comes from (read_aligned)


@dataclass
class AlignedCheckpoint:
    """What an aligned checkpoint says about the aligned model to rebuild (:func:`read_aligned`)."""

    state: dict[str, Tensor]
    encoder: nn.Module  #: the configured encoder, or the aligned run's, rebuilt from its config.yaml
    head: str
    head_hidden: int
    head_shape: dict[str, Any] = field(default_factory=dict)  #: readout / head_queries the run recorded
    note: str = "configured"  #: which encoder, for reconstruct.json


def read_aligned(path: str | Path, encoder: nn.Module, encoder_source: str, head: str,
                 head_hidden: int) -> AlignedCheckpoint:
    """Read an aligned checkpoint: its weights, its head settings (they win over the configured ``head`` /
    ``head_hidden``) and the encoder to load them into — with ``encoder_source`` ``"auto"`` the aligned run's
    saved ``config.yaml`` when found (with ``encoder``'s data facts), ``"config"`` always ``encoder``,
    ``"checkpoint"`` the saved config or an error."""
    state, hp = read_checkpoint(path)
    for name, configured in (("head", head), ("head_hidden", head_hidden)):
        if hp.get(name) is not None and hp[name] != configured:
            log.info("reconstruct: %s=%r from %s (configured %r)", name, hp[name], path, configured)
    note = "configured"
    config = run_config_of(path) if encoder_source != "config" else None
    if encoder_source == "checkpoint" and config is None:
        raise CheckpointError(f"encoder_source='checkpoint' but no config.yaml beside {path} (or in its parent folder)")
    if config is not None:
        encoder = encoder_from_config(config, encoder)
        note = f"{type(encoder).__name__} from {config}"
        log.info("reconstruct: encoder rebuilt from the aligned run's %s", config)
    shape = {k: hp[k] for k in ("readout", "head_queries") if hp.get(k) is not None}
    return AlignedCheckpoint(state, encoder, hp.get("head") or head, hp.get("head_hidden") or head_hidden, shape, note)


def load_aligned(model: nn.Module, state: dict[str, Tensor], path: str | Path) -> None:
    """Load an aligned checkpoint's ``encoder.*`` and ``head.*`` weights into ``model`` (an ``AlignedModel``),
    each strictly."""
    for prefix, module in (("encoder.", model.encoder), ("head.", model.head)):
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not sub:
            raise CheckpointError(f"{path}: no '{prefix}*' weights")
        load_strict(module, sub, f"{path} ({prefix}*)")


def check_init_split(dm: Any, init_from: str | Path) -> str:
    """Refuse an ``init_from`` checkpoint that trained on windows this run tests on (``ProvenanceError``).

    A pretraining (or alignment) checkpoint records its split and training spans (``chanmusic_provenance``,
    ``chanmusic.evaluation.provenance``). The alignment's test windows of ``dm`` (set up) that overlap those spans
    in the same recording were seen in pretraining: self-supervised or not, the score would not be a held-out one.
    Returns what was checked (for the log); a checkpoint without a record (older chanmusic, another tool) is
    warned about, since its split cannot be checked."""
    from chanmusic.core.errors import ProvenanceError
    from chanmusic.evaluation.provenance import checkpoint_record, overlap_count

    rec = checkpoint_record(init_from)
    if not rec or "train_spans" not in rec:
        log.warning("model.init_from %s records no training split: cannot check that it never saw this run's "
                    "test windows", init_from)
        return "not recorded"
    held = _held_out_songs(dm)
    seen = sorted(held & _songs_of_spans(rec["train_spans"]))
    if seen:  # new music: not one window of a held-out song, whatever its recording or time
        raise ProvenanceError(
            "model.init_from", f"{init_from} trained on EEG of held-out song(s) {seen} of this run's "
            f"--data.test_songs {sorted(held)}", "pretrain on this fold's split (--data.split songs --data.test_songs "
            f"{sorted(held)}: `chanmusic compare` with folds: songs k=... does), or hold out other songs")
    n = overlap_count(dm, rec["train_spans"])
    if n:
        split = rec.get("split", {}).get("hash", "?")
        raise ProvenanceError(
            "model.init_from", f"{init_from} trained on {n} of {len(dm.split.test)} test windows of this split (its "
            f"split {str(split)[:12]})", "pretrain with this run's data.split settings (split_seed, test_fraction, "
            "span_s: e.g. experiments/data/pretrain_8s.yaml after this run's data file), or change this run's split")
    return (f"checked: its training spans avoid the {len(dm.split.test)} test windows"
            + (f" and the held-out songs {sorted(held)}" if held else ""))


def _held_out_songs(dm: Any) -> set[int]:
    """The held-out songs of ``dm``'s split (``split: songs``), else none."""
    cfg = getattr(dm, "split_cfg", None)
    return {int(s) for s in (cfg.test_songs or ())} if cfg is not None and cfg.mode == "songs" else set()


def _songs_of_spans(train_spans: dict[str, Any]) -> set[int]:
    """Global song ids of the recordings a checkpoint's training spans name (``"<dataset>/<stimulus>/..."``:
    ``chanmusic.evaluation.provenance.train_spans``); a recording of an unknown dataset or stimulus is skipped."""
    from datamodules.songs import song_of

    out = set()
    for key in train_spans:
        dataset, stimulus = (key.split("/") + ["", ""])[:2]
        try:
            out.add(int(song_of(dataset, int(stimulus)).index))
        except (ValueError, KeyError, StopIteration):
            continue
    return out

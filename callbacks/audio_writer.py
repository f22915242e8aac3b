"""``AudioPredictionWriter``: writes the reconstruction stage's predictions as wav files plus a manifest.

Used by ``chanmusic predict`` with ``experiments/reconstruct/*.yaml``. Each prediction (one batch of
``chanmusic.stages.reconstruct.ReconstructModule.predict_step``) is a dict::

    {"sr": 16000, "generated": [b, S] float32, "true": [b, S'] float32, "meta": [b dicts]}

with ``meta[i]`` holding at least ``segment`` (the EEG window id), ``subject``, ``song``, ``stimulus``, ``music``,
``start_s``, ``length_s`` and ``clap_score``. Layout of the output folder (default ``<log_dir>/predictions``)::

    generated/sub<subject>_<stimulus>_t<start>s_seg<segment>.wav   one per test window (AudioLDM output)
    true/<stimulus>_t<start>s.wav                                   one per distinct music segment (the heard clip)
    manifest.csv, manifest.json                                      one row per window; paths relative to the folder

Writing is per batch (``write_interval="batch"``), so audio never piles up in memory. Under DDP each process writes
its own windows; ``DistributedSampler`` pads with repeated windows, so rows are deduplicated by ``segment`` and each
file is written to a temporary name and moved into place atomically (two processes writing the same window write the
same bytes: the generation noise is seeded per window). The manifest is gathered and written by rank 0 at the end.
This package does not import ``chanmusic`` (the import direction is chanmusic -> callbacks).
"""
from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter

MANIFEST_COLUMNS = ("segment", "subject", "song", "song_name", "genre", "stimulus", "music", "start_s", "length_s",
                    "generated", "true", "clap_score")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-")


def _write_wav_atomic(path: Path, audio: np.ndarray, sr: int, subtype: str, tag: str) -> None:
    import soundfile as sf

    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if not np.isfinite(x).all():
        raise ValueError(f"{path}: audio contains NaN or inf")
    if subtype == "PCM_16":
        x = np.clip(x, -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{tag}.tmp.wav")
    sf.write(str(tmp), x, int(sr), subtype=subtype)
    os.replace(tmp, path)


class AudioPredictionWriter(BasePredictionWriter):
    """Write generated and true audio (16 kHz wav) per test window and ``manifest.{csv,json}``.

    Args:
        output_dir: folder to write to; ``None`` = ``<trainer.log_dir>/predictions``.
        subtype: wav sample format: ``"FLOAT"`` (32-bit float, lossless) or ``"PCM_16"`` (clipped to [-1, 1]).
        write_true: also write the true clip of each distinct music segment.
    """

    def __init__(self, output_dir: str | None = None, subtype: str = "FLOAT", write_true: bool = True):
        super().__init__(write_interval="batch")
        subtype = subtype.upper()
        if subtype not in ("FLOAT", "PCM_16"):
            raise ValueError(f"subtype must be FLOAT or PCM_16, got {subtype!r}")
        self.output_dir = output_dir
        self.subtype = subtype
        self.write_true = write_true
        self.dir: Path | None = None
        self._rows: dict[int, dict[str, Any]] = {}
        self._true_written: set[str] = set()

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "predict":
            return
        # trainer.log_dir is a collective under DDP: resolve it here, on every rank
        base = self.output_dir or Path(trainer.log_dir or trainer.default_root_dir) / "predictions"
        self.dir = Path(base)
        self._rows = {}
        self._true_written = set()

    def write_on_batch_end(self, trainer, pl_module, prediction: dict[str, Any], batch_indices, batch, batch_idx: int,
                           dataloader_idx: int = 0) -> None:
        if not prediction or not prediction.get("meta"):
            return
        assert self.dir is not None, "AudioPredictionWriter.setup was not called"
        sr = int(prediction["sr"])
        tag = f"rank{trainer.global_rank}"
        for i, meta in enumerate(prediction["meta"]):
            seg = int(meta["segment"])
            if seg in self._rows:
                continue
            stim = _safe(meta["stimulus"])
            t = f"t{float(meta['start_s']):09.3f}s"
            gen_rel = f"generated/sub{int(meta['subject']):02d}_{stim}_{t}_seg{seg:06d}.wav"
            _write_wav_atomic(self.dir / gen_rel, prediction["generated"][i], sr, self.subtype, tag)
            true_rel = ""
            if self.write_true:
                true_rel = f"true/{stim}_{t}.wav"
                if true_rel not in self._true_written:
                    _write_wav_atomic(self.dir / true_rel, prediction["true"][i], sr, self.subtype, tag)
                    self._true_written.add(true_rel)
            row = {k: meta.get(k) for k in MANIFEST_COLUMNS}
            row.update(generated=gen_rel, true=true_rel, sr=sr)
            self._rows[seg] = row

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        super().on_predict_epoch_end(trainer, pl_module)
        rows = list(self._rows.values())
        if trainer.world_size > 1:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                gathered: list[Any] = [None] * dist.get_world_size()
                dist.all_gather_object(gathered, rows)
                rows = [r for part in gathered for r in (part or [])]
        if not trainer.is_global_zero or self.dir is None:
            return
        unique = {int(r["segment"]): r for r in rows}
        rows = [unique[k] for k in sorted(unique)]
        self.dir.mkdir(parents=True, exist_ok=True)
        info = pl_module.prediction_info() if hasattr(pl_module, "prediction_info") else {}
        (self.dir / "manifest.json").write_text(json.dumps({"info": info, "paths_relative_to": "this folder",
                                                            "items": rows}, indent=2, default=str))
        with open(self.dir / "manifest.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(MANIFEST_COLUMNS) + ["sr"])
            w.writeheader()
            w.writerows(rows)
        self.manifest_path = self.dir / "manifest.csv"

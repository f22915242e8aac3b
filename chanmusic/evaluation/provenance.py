"""What a run was made from, and the guard that keeps a test split tied to its checkpoint.

Every checkpoint a stage saves carries ``checkpoint["chanmusic_provenance"]`` (:func:`fit_record`): the split's
hash and training time spans, the cache key and content hash, the CLAP (spec, seed, the model the cache names, its
embeddings' CRC), the data selection and the package version. A ``test`` whose CLAP differs is refused
(:func:`clap_change`). At ``test``,
:class:`ProvenanceCallback` compares the split being scored with the checkpoint's: a different split (another
``test_fraction``, ``split_seed``, window, subject or song selection) is refused with a
:class:`~chanmusic.core.errors.ProvenanceError` that says how many test windows were training windows, unless
``--data.allow_split_change true`` (then the change is recorded). ``metrics.json`` gets a ``"provenance"`` entry
(:func:`run_provenance`)::

    "provenance": {"checkpoint": {"path", "sha256", "bytes"}, "cache": {"key", "path"},
                   "split": {"hash", "train_hash", "test_hash", "n_train", "n_val", "n_test"},
                   "trained_split_hash", "split_check", "data": {...the selection...},
                   "package": {"chanmusic", "torch", "lightning", "git"}, "argv": [...]}

A *window's identity* is its recording (dataset, stimulus, condition, hearing, subject) and its time span in
seconds, so the hash does not depend on the cache's row order.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import Callback

from chanmusic.core.errors import ProvenanceError

log = logging.getLogger("chanmusic")

KEY = "chanmusic_provenance"
#: data-module settings recorded as "the data selection"
SELECTION = ("dataset", "root", "roots", "subjects", "songs", "conditions", "hearings", "bandpass",
             "average_reference", "resample", "scaling", "clip", "window_s", "stride_s", "control",
             "control_min_shift_s", "clap", "clap_seed", "clap_center", "expected_sfreq")
SPLIT_FIELDS = ("mode", "test_fraction", "val_fraction", "seed", "span_s", "gap_s", "test_subjects", "test_songs")


def _plain(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def data_selection(dm) -> dict[str, Any]:
    """The data module's settings that decide which windows exist and what they hold, plus its split settings."""
    out = {k: _plain(getattr(dm, k)) for k in SELECTION if hasattr(dm, k)}
    cfg = getattr(dm, "split_cfg", None)
    if cfg is not None:
        out["split"] = {k: _plain(getattr(cfg, k)) for k in SPLIT_FIELDS if hasattr(cfg, k)}
    return out


def window_ids(dm, rows: np.ndarray) -> list[str]:
    """``"<dataset>/<stimulus>/<condition>/<hearing>/s<subject>@<start s>+<length s>"`` of cache rows ``rows``."""
    seg, recs, sf = dm.cache.segments, dm.cache.recordings, float(dm.sfreq)
    out = []
    for r, start, length in seg[np.asarray(rows, dtype=np.int64)][:, [0, 3, 4]]:
        rec = recs[int(r)]
        out.append(f"{_rec_key(rec)}@{start / sf:.6f}+{length / sf:.6f}")
    return out


def _rec_key(rec: dict[str, Any]) -> str:
    return (f"{rec.get('dataset')}/{rec.get('stimulus')}/{rec.get('condition', 'orig')}/{rec.get('hearing', 'a')}"
            f"/s{rec.get('subject')}")


def _hash(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:16]


def split_record(dm) -> dict[str, Any]:
    """Hashes and sizes of the data module's current split (``dm.setup()`` must have run)."""
    parts = {name: window_ids(dm, getattr(dm.split, name)) for name in ("train", "val", "test")}
    return {"hash": _hash([f"{p}:{w}" for p, ids in parts.items() for w in ids]),
            "train_hash": _hash(parts["train"]), "test_hash": _hash(parts["test"]),
            **{f"n_{p}": len(ids) for p, ids in parts.items()}}


def train_spans(dm) -> dict[str, list[list[float]]]:
    """Per recording, the merged ``[start, end]`` seconds covered by training windows."""
    seg, recs, sf = dm.cache.segments, dm.cache.recordings, float(dm.sfreq)
    spans: dict[str, list[list[float]]] = {}
    rows = seg[np.sort(dm.split.train)]
    for r in np.unique(rows[:, 0]):
        sel = rows[rows[:, 0] == r]
        order = np.argsort(sel[:, 3])
        merged: list[list[float]] = []
        for start, length in sel[order][:, [3, 4]]:
            s, e = round(float(start) / sf, 6), round(float(start + length) / sf, 6)
            if merged and s <= merged[-1][1] + 1e-9:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        spans[_rec_key(recs[int(r)])] = merged
    return spans


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, Any]:
    import importlib.metadata as md

    out: dict[str, Any] = {}
    for name in ("chanmusic", "torch", "lightning"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        out["git"] = head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if head.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        out["git"] = None
    return out


def clap_record(dm) -> dict[str, Any]:
    """The CLAP the targets came from: the ``--data.clap`` spec and seed, the model the cache names (reader, file or
    hub id, seed of a random one) and the CRC of the cached embeddings (another CLAP file gives other numbers)."""
    from datamodules.datamodule import clap_identity

    man = (getattr(dm.cache, "manifest", None) or {}) if getattr(dm, "cache", None) is not None else {}
    return {"spec": _plain(getattr(dm, "clap", None)), "seed": _plain(getattr(dm, "clap_seed", None)),
            "identity": clap_identity(str(dm.clap), int(dm.clap_seed)) if hasattr(dm, "clap") else None,
            "model": man.get("clap"), "embeddings": (man.get("checksums") or {}).get("clap.npy")}


def cache_record(dm) -> dict[str, Any]:
    """The cache's key and a hash of its files' checksums (what the targets and EEG were read from)."""
    sums = json.dumps(((getattr(dm.cache, "manifest", None) or {}) if dm.cache is not None else {}).get("checksums"),
                      sort_keys=True)
    return {"key": dm.cache_path().name, "content_hash": hashlib.sha256(sums.encode()).hexdigest()[:16]}


def fit_record(dm) -> dict[str, Any]:
    """What a checkpoint stores: split record and training spans, cache key, data selection, CLAP, versions."""
    return {"split": split_record(dm), "train_spans": train_spans(dm), "cache_key": dm.cache_path().name,
            "cache": cache_record(dm), "clap": clap_record(dm), "data": data_selection(dm),
            "package": package_versions()}


def clap_change(old: dict[str, Any] | None, new: dict[str, Any], same_windows: bool) -> str | None:
    """What differs between a checkpoint's CLAP record and this run's (``None``: the same CLAP). The embeddings'
    CRC is compared only where the windows are the same (other windows hold other embeddings)."""
    if not old:
        return None
    if old.get("model") and new.get("model") and old["model"] != new["model"]:
        return f"CLAP {old['model']!r} -> {new['model']!r}"
    if old.get("spec") == new.get("spec") == "tiny-random" and old.get("seed") != new.get("seed"):
        return f"--data.clap_seed {old.get('seed')} -> {new.get('seed')}"
    if same_windows and old.get("embeddings") and new.get("embeddings") and old["embeddings"] != new["embeddings"]:
        return (f"the cached CLAP embeddings differ (crc {old['embeddings']} -> {new['embeddings']}: another CLAP "
                f"file or other song audio under --data.clap {new.get('spec')!r})")
    return None


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(16 << 20), b""):
            h.update(block)
    return h.hexdigest()


def checkpoint_record(path: str | Path) -> dict[str, Any] | None:
    """The ``chanmusic_provenance`` a checkpoint file stores (``None`` when it has none), read with
    ``weights_only=True`` and memory-mapped (the weights are not read)."""
    import torch

    try:
        ck = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a zip checkpoint (e.g. safetensors): nothing recorded
        return None
    rec = ck.get(KEY) if isinstance(ck, dict) else None
    return rec if isinstance(rec, dict) else None


def overlap_count(dm, spans: dict[str, list[list[float]]]) -> int:
    """Test windows of ``dm``'s split that overlap a training span of ``spans`` (same recording)."""
    seg, recs, sf = dm.cache.segments, dm.cache.recordings, float(dm.sfreq)
    n = 0
    for r, start, length in seg[np.asarray(dm.split.test, dtype=np.int64)][:, [0, 3, 4]]:
        s, e = start / sf, (start + length) / sf
        n += any(a < e - 1e-9 and s < b - 1e-9 for a, b in spans.get(_rec_key(recs[int(r)]), ()))
    return int(n)


def _changed_settings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{k}.{x}" for x in _changed_settings(a, b)]
        elif a != b:
            out.append(f"{k} {a!r} -> {b!r}")
    return out


class ProvenanceCallback(Callback):
    """Stores :func:`fit_record` in every checkpoint and guards / records the split and the CLAP at ``test``."""

    def __init__(self) -> None:
        self.test_info: dict[str, Any] | None = None
        self._fit: tuple[int, dict[str, Any]] | None = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        dm = trainer.datamodule
        if dm is not None and getattr(dm, "split", None) is not None:
            if self._fit is None or self._fit[0] != id(dm.split):  # one record per split, not per save
                self._fit = (id(dm.split), fit_record(dm))
            checkpoint[KEY] = self._fit[1]

    def on_test_start(self, trainer, pl_module) -> None:
        dm = trainer.datamodule
        ckpt = trainer.ckpt_path or getattr(pl_module, "aligned_checkpoint", None)  # reconstruction's weights
        info: dict[str, Any] = {"checkpoint": None, "trained_split_hash": None, "split_check": "no checkpoint"}
        if ckpt and Path(ckpt).is_file():
            info["checkpoint"] = {"path": str(Path(ckpt).resolve()), "sha256": file_sha256(ckpt),
                                  "bytes": Path(ckpt).stat().st_size}
            info["split_check"] = self._check(dm, Path(ckpt))
            rec = checkpoint_record(ckpt)
            info["trained_split_hash"] = (rec or {}).get("split", {}).get("hash")
        self.test_info = info

    @staticmethod
    def _check(dm, ckpt: Path) -> str:
        rec = checkpoint_record(ckpt)
        if dm is None or getattr(dm, "split", None) is None:
            return "no data module"
        if not rec or "split" not in rec:
            log.warning("%s records no training split (saved by an older chanmusic or another tool): the test split "
                        "cannot be checked against it", ckpt)
            return "not recorded in the checkpoint"
        now = split_record(dm)
        same = now["hash"] == rec["split"].get("hash")
        clap = clap_change(rec.get("clap"), clap_record(dm), same)
        if clap:
            raise ProvenanceError(f"--ckpt_path {ckpt}", f"was aligned to another CLAP than this test's targets "
                                  f"({clap}); its scores would compare embeddings of two different models",
                                  "test with the fit's --data.clap and --data.clap_seed (--config RUN/config.yaml), "
                                  "or fit again with this CLAP")
        if same:
            return "same as the checkpoint's"
        leaked = overlap_count(dm, rec.get("train_spans") or {})
        changed = _changed_settings(rec.get("data") or {}, data_selection(dm))
        what = (f"was trained on another split: {leaked} of {now['n_test']} test windows here lie in its training "
                f"data (changed: {'; '.join(changed[:4]) or 'the data files or the cache'})")
        if getattr(dm, "allow_split_change", False):
            log.warning("--ckpt_path %s %s; scoring anyway (--data.allow_split_change)", ckpt, what)
            return f"changed, allowed by --data.allow_split_change: {leaked} of {now['n_test']} test windows were " \
                   f"training windows"
        raise ProvenanceError(f"--ckpt_path {ckpt}", what, "test with the fit's data settings (--config "
                              "RUN/config.yaml), or pass --data.allow_split_change true to score anyway (recorded "
                              "in metrics.json)")


def run_provenance(trainer) -> dict[str, Any] | None:
    """The ``"provenance"`` entry of ``metrics.json`` for a ``test`` run by ``trainer`` (``None`` outside one)."""
    cb = next((c for c in getattr(trainer, "callbacks", []) if isinstance(c, ProvenanceCallback)), None)
    dm = getattr(trainer, "datamodule", None)
    if cb is None or cb.test_info is None or dm is None or getattr(dm, "split", None) is None:
        return None
    return {**cb.test_info, "cache": {**cache_record(dm), "path": str(dm.cache.path)}, "clap": clap_record(dm),
            "split": split_record(dm), "data": data_selection(dm), "package": package_versions(),
            "argv": list(sys.argv)}

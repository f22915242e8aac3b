"""The prepared cache on disk: files, not models.

One cache directory per set of inputs + settings (its name is the settings' hash)::

    <cache_dir>/<key>/
        manifest.json     settings, counts, warnings, the CLAP used; written last, so its presence
                          means the cache is complete
        eeg.f32           raw float32 [total_samples, C] (shape in the manifest): all recordings back to
                          back, time-major so a window is one contiguous read (opened as a memmap)
        recordings.json   one entry per recording: dataset, subject, song, stimulus, condition,
                          hearing, offset (into eeg.f32), n_samples, source
        segments.npy      int64 [S, 6]: SEGMENT_COLUMNS per EEG window
        music.npy         int64 [M, 3]: MUSIC_COLUMNS per distinct music segment (audio differs)
        clap.npy          float32 [M, D]: CLAP audio embedding of each music segment
        mel.npy           float32 [M, F, N]: log-mel spectrogram of each music segment

Everything is loaded with ``allow_pickle=False``; a truncated or tampered file fails with an error
naming it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CACHE_VERSION = 1
SEGMENT_COLUMNS = ("rec", "subject", "song", "start", "length", "music")
MUSIC_COLUMNS = ("stimulus_key", "start", "length")  # stimulus_key indexes manifest["stimuli"]
MANIFEST = "manifest.json"


class CacheError(RuntimeError):
    """A cache file is missing, truncated or inconsistent."""


def settings_key(settings: dict[str, Any]) -> str:
    """Stable short hash of JSON-serialisable settings (sorted keys)."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_fingerprint(paths: list[Path]) -> list[list[Any]]:
    """Name, size and mtime of each input file: a changed file changes the cache key."""
    out = []
    for p in sorted(paths):
        st = Path(p).stat()
        out.append([str(Path(p).name), st.st_size, int(st.st_mtime)])
    return out


def _load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError as e:
        raise CacheError(f"cache file missing: {path}. Delete {path.parent} and run `chanmusic prepare` again.") from e
    except (ValueError, OSError, EOFError) as e:
        raise CacheError(f"cache file unreadable (truncated or not a plain .npy array): {path} ({e}). "
                         f"Delete {path.parent} and run `chanmusic prepare` again.") from e


@dataclass
class PreparedCache:
    """Read access to a complete cache directory (memmapped EEG, small tables in RAM)."""

    path: Path
    manifest: dict[str, Any]
    recordings: list[dict[str, Any]]
    segments: np.ndarray  # int64 [S, 6]
    music: np.ndarray  # int64 [M, 3]
    clap: np.ndarray  # float32 [M, D]
    mel: np.ndarray  # float32 [M, F, N] (memmap)

    @classmethod
    def open(cls, path: str | Path) -> "PreparedCache":
        path = Path(path)
        man = path / MANIFEST
        if not man.exists():
            raise CacheError(f"no complete cache at {path} ({MANIFEST} missing): run `chanmusic prepare` first")
        try:
            manifest = json.loads(man.read_text())
            recordings = json.loads((path / "recordings.json").read_text())
        except (json.JSONDecodeError, FileNotFoundError) as e:
            raise CacheError(f"cache metadata unreadable in {path}: {e}. Delete it and prepare again.") from e
        cache = cls(path, manifest, recordings, _load_npy(path / "segments.npy"), _load_npy(path / "music.npy"),
                    _load_npy(path / "clap.npy"), _load_npy(path / "mel.npy", mmap=True))
        cache.validate()
        return cache

    def eeg(self) -> np.ndarray:
        """float32 ``[total, C]`` memmap (opened per call so each DataLoader worker has its own handle)."""
        path = self.path / "eeg.f32"
        shape = tuple(self.manifest["eeg_shape"])
        expected = int(np.prod(shape)) * 4
        if not path.exists() or path.stat().st_size != expected:
            size = path.stat().st_size if path.exists() else "missing"
            raise CacheError(f"{path}: expected {expected} bytes for float32 {shape}, found {size} "
                             f"(truncated?). Delete {self.path} and run `chanmusic prepare` again.")
        return np.memmap(path, dtype=np.float32, mode="r", shape=shape)

    def validate(self) -> None:
        m = self.manifest
        checks = [
            (self.segments.ndim == 2 and self.segments.shape[1] == len(SEGMENT_COLUMNS), "segments.npy columns"),
            (self.music.ndim == 2 and self.music.shape[1] == len(MUSIC_COLUMNS), "music.npy columns"),
            (len(self.clap) == len(self.music) == len(self.mel), "clap/mel/music lengths"),
            (len(self.segments) == m.get("n_segments"), "segment count vs manifest"),
            (len(self.recordings) == m.get("n_recordings"), "recording count vs manifest"),
        ]
        eeg = self.eeg()
        if len(self.segments):
            end = max(r["offset"] + r["n_samples"] for r in self.recordings)
            checks.append((end <= eeg.shape[0], "recording offsets vs eeg.f32"))
        if len(self.segments):
            checks.append((int(self.segments[:, 5].max()) < len(self.music), "segment music ids"))
        for ok, what in checks:
            if not ok:
                raise CacheError(f"cache at {self.path} is inconsistent ({what}). Delete it and prepare again.")

    def column(self, name: str) -> np.ndarray:
        return self.segments[:, SEGMENT_COLUMNS.index(name)]


class CacheWriter:
    """Writes a cache into ``<dir>.partial`` and renames it into place when complete."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".partial")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self._eeg = open(self.tmp / "eeg.f32", "wb")
        self.n_samples = 0
        self.n_channels: int | None = None

    def append_eeg(self, eeg_tc: np.ndarray) -> int:
        """Append one recording ``[T, C]``; returns its offset (in samples) into ``eeg.f32``."""
        eeg_tc = np.ascontiguousarray(eeg_tc, dtype=np.float32)
        if self.n_channels is None:
            self.n_channels = eeg_tc.shape[1]
        elif eeg_tc.shape[1] != self.n_channels:
            raise CacheError(f"recording has {eeg_tc.shape[1]} channels, earlier ones {self.n_channels}")
        offset = self.n_samples
        eeg_tc.tofile(self._eeg)
        self.n_samples += eeg_tc.shape[0]
        return offset

    def save_array(self, name: str, arr: np.ndarray) -> None:
        np.save(self.tmp / f"{name}.npy", arr, allow_pickle=False)

    def save_json(self, name: str, obj: Any) -> None:
        (self.tmp / name).write_text(json.dumps(obj, indent=1, default=str))

    def open_array(self, name: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        return np.lib.format.open_memmap(self.tmp / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)

    def finish(self, manifest: dict[str, Any]) -> Path:
        self._eeg.close()
        manifest = {**manifest, "eeg_shape": [self.n_samples, self.n_channels]}
        self.save_json(MANIFEST, manifest)
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return self.path

"""The prepared cache on disk: files, not models.

One cache directory per set of inputs + settings (its name is the settings' hash)::

    <cache_dir>/<key>/
        manifest.json     settings, counts, warnings, the CLAP used; written last, so its presence
                          means the cache is complete
        eeg.f32           raw float32: all recordings back to back, each channel-major ``[C, n_samples]``
                          (``eeg_shape`` = [total_samples, C] in the manifest; recording r starts at element
                          ``offset * C``), so a window is C contiguous runs copied straight into ``[C, L]``
                          with no transpose (opened as a memmap; :meth:`PreparedCache.recording_eeg`)
        recordings.json   one entry per recording: dataset, subject, song, stimulus, condition,
                          hearing, offset (into eeg.f32), n_samples, source
        segments.npy      int64 [S, 6]: SEGMENT_COLUMNS per EEG window
        music.npy         int64 [M, 3]: MUSIC_COLUMNS per distinct music segment (audio differs)
        clap.npy          float32 [M, D]: CLAP audio embedding of each music segment
        mel.npy           float32 [M, F, N]: log-mel spectrogram of each music segment

Everything is loaded with ``allow_pickle=False``; a truncated or tampered file fails with an error
naming it.

Integrity: the manifest records the size and a CRC-32 (of 64 MiB blocks, hashed in threads; :data:`CHECKSUM`,
stdlib zlib; the cost is in ``make bench``) of every other file, checked whenever a cache is opened (once per
process while the files are unchanged), so a same-size edit (NaN EEG, shifted segments, zeroed CLAP) is refused. :func:`cache_lock`
serialises two ``prepare`` runs of one cache; the writer checks free space before each large write (a clear
error, never SIGBUS on a memmap) and writes into ``<key>.partial``, renamed into place when complete.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chanmusic.core.errors import DASH, FormattedError
from chanmusic.core.files import atomic_write_text

#: 2: eeg.f32 channel-major per recording (1 was time-major [total, C]); part of the cache key, so a new
#: version builds a new cache folder and a cache of another version is refused when opened directly
CACHE_VERSION = 2
EEG_LAYOUT = "channel-major per recording"
SEGMENT_COLUMNS = ("rec", "subject", "song", "start", "length", "music")
MUSIC_COLUMNS = ("stimulus_key", "start", "length")  # stimulus_key indexes manifest["stimuli"]
MANIFEST = "manifest.json"
CHECKSUM = "crc32-64MiB-blocks"
#: free space kept on the cache's disk beyond what a write needs
SPACE_MARGIN = 64 << 20
log = logging.getLogger("chanmusic")
_VERIFIED: dict[tuple, str] = {}  # (file, size, mtime_ns, inode) -> checksum, for this process
#: seconds spent on checksums by the last PreparedCache.open (reported by `make bench`)
last_verify_seconds = 0.0


class CacheError(FormattedError, RuntimeError):
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


def file_checksum(path: Path, block: int = 64 << 20) -> str:
    """``"<size>:<crc32 hex>"`` of a file: the CRC-32 of the big-endian CRC-32s of its ``block``-byte blocks.

    Blocks are hashed in threads (``zlib.crc32`` releases the GIL), so the cost scales down with cores; the
    result does not depend on the number of threads.
    """
    from concurrent.futures import ThreadPoolExecutor

    size = Path(path).stat().st_size
    n = max(1, -(-size // block))

    def one(i: int) -> int:
        with open(path, "rb", buffering=0) as fh:
            fh.seek(i * block)
            crc, left = 0, min(block, size - i * block)
            while left > 0:
                data = fh.read(min(left, 16 << 20))
                if not data:
                    break
                crc, left = zlib.crc32(data, crc), left - len(data)
            return crc

    workers = min(n, os.cpu_count() or 1, 16)
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            crcs = list(pool.map(one, range(n)))
    else:
        crcs = [one(i) for i in range(n)]
    return f"{size}:{zlib.crc32(b''.join(c.to_bytes(4, 'big') for c in crcs)):08x}"


def verify_checksums(path: Path, manifest: dict[str, Any]) -> None:
    """Raise :class:`CacheError` naming the first file whose size or CRC-32 differs from the manifest's."""
    global last_verify_seconds
    sums = manifest.get("checksums")
    t0 = time.perf_counter()
    if not sums:
        raise CacheError(f"{path}: the cache records no checksums (prepared by an older chanmusic), so its files "
                         f"cannot be verified — delete {path} and run `chanmusic prepare` again (same settings)")
    for name, want in sorted(sums.items()):
        f = path / name
        try:
            st = f.stat()
        except FileNotFoundError:
            raise CacheError(f"cache file missing: {f} — delete {path} and run `chanmusic prepare` again") from None
        key = (str(f), st.st_size, st.st_mtime_ns, st.st_ino)
        got = _VERIFIED.get(key) or file_checksum(f)
        if got != want:
            raise CacheError(f"{f}: content changed since prepare ({CHECKSUM} {got} != {want}); the cache was "
                             f"edited or damaged — delete {path} and run `chanmusic prepare` again")
        _VERIFIED[key] = got
    last_verify_seconds = time.perf_counter() - t0


@contextlib.contextmanager
def cache_lock(path: str | Path):
    """Hold ``<cache_dir>/.locks/<key>.lock`` (``flock``) while building the cache at ``path``: a second prepare of
    the same cache waits, then finds the cache complete. The lock goes with the process (no stale locks after a
    crash)."""
    import fcntl

    path = Path(path)
    lock = path.parent / ".locks" / f"{path.name}.lock"
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fh = open(lock, "a+")
    except OSError as e:
        raise CacheError(unwritable(path.parent, e)) from e
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            log.info("waiting for another prepare of %s (%s) to finish", path, fh.read().strip() or "pid ?")
            fcntl.flock(fh, fcntl.LOCK_EX)
        except OSError as e:  # a file system without locks (ENOLCK, EOPNOTSUPP): two prepares could mix files
            raise CacheError(f"--data.cache_dir {path.parent}: the file system gives no file locks ({e.strerror or e}"
                             f"), so two prepares of one cache could write into each other {DASH} put the cache on "
                             f"a local disk (or a file system with flock) and point --data.cache_dir there") from e
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def unwritable(folder: Path, e: OSError) -> str:
    """The one line for a cache folder that cannot be written (read-only file system, permissions)."""
    return (f"--data.cache_dir {folder}: cannot write there ({e.strerror or e}) — pass a writable "
            f"--data.cache_dir (or set CHANMUSIC_CACHE)")


def ensure_space(folder: Path, nbytes: int, what: str) -> None:
    """Raise :class:`CacheError` unless ``folder``'s disk has ``nbytes`` (+ :data:`SPACE_MARGIN`) free."""
    free = shutil.disk_usage(folder).free
    if free < nbytes + SPACE_MARGIN:
        raise CacheError(_no_space(folder, nbytes, what, free))


def _no_space(folder: Path, nbytes: int, what: str, free: int | None = None) -> str:
    free = shutil.disk_usage(folder).free if free is None else free
    need = (nbytes + SPACE_MARGIN) / 2**20
    return (f"{folder}: not enough disk space for {what} ({need:.1f} MiB needed: {nbytes / 2**20:.1f} MiB of data "
            f"plus a {SPACE_MARGIN >> 20} MiB reserve; {free / 2**20:.1f} MiB free) — free some space or put the "
            f"cache elsewhere with --data.cache_dir")


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
        version = (manifest.get("settings") or {}).get("version")
        if version != CACHE_VERSION:
            raise CacheError(f"{path}: cache format {version} (this chanmusic reads format {CACHE_VERSION}: "
                             f"EEG stored {EEG_LAYOUT}) — rebuild it with `chanmusic prepare` (same settings; "
                             f"the old folder can be deleted)")
        verify_checksums(path, manifest)
        cache = cls(path, manifest, recordings, _load_npy(path / "segments.npy"), _load_npy(path / "music.npy"),
                    _load_npy(path / "clap.npy"), _load_npy(path / "mel.npy", mmap=True))
        cache.validate()
        return cache

    def eeg(self) -> np.ndarray:
        """float32 flat memmap of all ``total * C`` values (opened per call so each DataLoader worker has its own
        handle); recording r is ``[C, n]`` at element ``offset * C`` (:meth:`recording_eeg`)."""
        path = self.path / "eeg.f32"
        shape = tuple(self.manifest["eeg_shape"])
        expected = int(np.prod(shape)) * 4
        if not path.exists() or path.stat().st_size != expected:
            size = path.stat().st_size if path.exists() else "missing"
            raise CacheError(f"{path}: expected {expected} bytes for float32 {shape}, found {size} "
                             f"(truncated?). Delete {self.path} and run `chanmusic prepare` again.")
        return np.memmap(path, dtype=np.float32, mode="r", shape=(int(np.prod(shape)),))

    def recording_eeg(self, r: int, flat: np.ndarray | None = None) -> np.ndarray:
        """Recording ``r``'s EEG, channel-major ``[C, n_samples]`` (a view into ``flat``, default :meth:`eeg`)."""
        return recording_view(self.eeg() if flat is None else flat, self.recordings[r], self.manifest["eeg_shape"][1])

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


def recording_view(flat: np.ndarray, recording: dict[str, Any], n_channels: int) -> np.ndarray:
    """``[C, n]`` view of one recording (its ``offset`` and ``n_samples``) in the flat channel-major EEG."""
    c, off, n = int(n_channels), int(recording["offset"]), int(recording["n_samples"])
    return flat[off * c:(off + n) * c].reshape(c, n)


class CacheWriter:
    """Writes a cache into ``<dir>.partial`` and renames it into place when complete."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".partial")
        try:
            if self.tmp.exists():
                shutil.rmtree(self.tmp)
            self.tmp.mkdir(parents=True)
            self._eeg = open(self.tmp / "eeg.f32", "wb")
        except OSError as e:
            raise CacheError(unwritable(self.path.parent, e)) from e
        self.n_samples = 0
        self.n_channels: int | None = None

    def append_eeg(self, eeg_tc: np.ndarray) -> int:
        """Append one recording ``[T, C]``, stored channel-major ``[C, T]``; returns its offset (in samples)."""
        eeg_tc = np.ascontiguousarray(np.asarray(eeg_tc, dtype=np.float32).T).T  # [T, C] view of a [C, T] block
        if self.n_channels is None:
            self.n_channels = eeg_tc.shape[1]
        elif eeg_tc.shape[1] != self.n_channels:
            raise CacheError(f"recording has {eeg_tc.shape[1]} channels, earlier ones {self.n_channels}")
        offset = self.n_samples
        try:
            ensure_space(self.tmp, eeg_tc.nbytes, "the EEG (eeg.f32)")
            eeg_tc.T.tofile(self._eeg)  # C-contiguous [C, T]: channel-major
        except OSError as e:
            raise self._write_error(e, eeg_tc.nbytes, "the EEG (eeg.f32)") from e
        except CacheError:
            self.abort()
            raise
        self.n_samples += eeg_tc.shape[0]
        return offset

    def abort(self) -> None:
        """Remove the partial folder (a refused prepare leaves nothing behind)."""
        try:
            self._eeg.close()
        except (OSError, AttributeError):
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _ensure(self, nbytes: int, what: str) -> None:
        try:
            ensure_space(self.tmp, nbytes, what)
        except CacheError:
            self.abort()
            raise

    def _write_error(self, e: OSError, nbytes: int, what: str) -> CacheError:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            err = CacheError(_no_space(self.tmp, nbytes, what))
            self.abort()
            return err
        self.abort()
        return CacheError(f"{self.tmp}: cannot write {what} ({e.strerror or e}) — check the folder's permissions "
                          f"or choose another --data.cache_dir")

    def save_array(self, name: str, arr: np.ndarray) -> None:
        self._ensure(arr.nbytes, f"{name}.npy")
        try:
            np.save(self.tmp / f"{name}.npy", arr, allow_pickle=False)
        except OSError as e:
            raise self._write_error(e, arr.nbytes, f"{name}.npy") from e

    def save_json(self, name: str, obj: Any) -> None:
        text = json.dumps(obj, indent=1, default=str)
        try:
            atomic_write_text(self.tmp / name, text)
        except OSError as e:
            raise self._write_error(e, len(text), name) from e

    def open_array(self, name: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        """A writable ``.npy`` memmap whose blocks are allocated up front (``posix_fallocate``): a full disk is a
        :class:`CacheError` here, not a SIGBUS on a later write into a sparse page."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        what = f"{name}.npy"
        self._ensure(nbytes, what)
        path = self.tmp / f"{name}.npy"
        try:
            arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
            if hasattr(os, "posix_fallocate"):
                fd = os.open(path, os.O_RDWR)
                try:
                    os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
                except OSError as e:
                    if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                        raise
                finally:
                    os.close(fd)
        except OSError as e:
            raise self._write_error(e, nbytes, what) from e
        return arr

    def finish(self, manifest: dict[str, Any]) -> Path:
        self._eeg.flush()
        os.fsync(self._eeg.fileno())
        self._eeg.close()
        names = sorted(p.name for p in self.tmp.iterdir() if p.is_file() and p.name != MANIFEST)
        manifest = {**manifest, "eeg_shape": [self.n_samples, self.n_channels], "eeg_layout": EEG_LAYOUT,
                    "checksum": CHECKSUM,
                    "checksums": {n: file_checksum(self.tmp / n) for n in names}}
        self.save_json(MANIFEST, manifest)
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return self.path

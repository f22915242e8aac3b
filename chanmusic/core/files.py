"""Writing files so that a reader never sees half of one, and the disk-full fault the test suite injects.

:func:`atomic_write_text` / :func:`atomic_write_bytes` write through a temporary file in the same folder and
``os.replace``: a reader (or a rerun) sees the old file or the new one, never half of one; a write that fails (a
full disk) leaves neither the temporary file nor a half-written target.

Fault injection (``tests/faults``): with ``CHANMUSIC_FAULT_DISK_FULL_AFTER=N`` in the environment, the writes made
through this module in one process fail with ``OSError(ENOSPC)`` once ``N`` bytes have been written in all (the
bytes that still fit are written first, as on a disk that fills). Unset, it costs one environment look-up per file.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

#: environment variable of the disk-full fault: the bytes this process may still write through this module
FAULT_DISK_FULL = "CHANMUSIC_FAULT_DISK_FULL_AFTER"
_budget: dict = {"setting": None, "written": 0}


def disk_full_fault(path: str | Path, n: int) -> int:
    """How many of ``n`` bytes about to be written to ``path`` fit under the injected disk-full fault (``n`` when
    none is set); counts them as written."""
    setting = os.environ.get(FAULT_DISK_FULL)
    if not setting:
        return n
    if _budget["setting"] != setting:  # a new fault setting starts a new count
        _budget.update(setting=setting, written=0)
    room = max(int(setting) - _budget["written"], 0)
    fits = min(n, room)
    _budget["written"] += fits
    return fits


def _write(fh, data: bytes, path: Path) -> None:
    fits = disk_full_fault(path, len(data))
    fh.write(data[:fits])
    if fits < len(data):
        fh.flush()
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (injected: {FAULT_DISK_FULL})", str(path))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``: readers see the
    old file or the new one, never half of one; on any error the temporary file is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            _write(fh, data, path)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))

"""One runner per output folder: ``OUT/.compare.lock`` holds the running runner's process id.

Two runners on one folder would redo each other's runs; a lock left by a runner that was killed is stale
(its process is gone) and is taken over.
"""
from __future__ import annotations

import os
from pathlib import Path


def acquire_lock(out: Path) -> Path:
    """``OUT/.compare.lock`` with this process id: two runners on one folder would redo each other's runs."""
    lock = out / ".compare.lock"
    try:
        pid = int(lock.read_text().strip())
    except (OSError, ValueError):
        pid = None
    if pid and pid != os.getpid():
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False  # a runner that was killed: its lock is stale
        except PermissionError:
            alive = True
        if alive:
            raise SystemExit(f"[compare] {out} is in use by process {pid} (remove {lock} if that is wrong)")
    lock.write_text(str(os.getpid()))
    return lock

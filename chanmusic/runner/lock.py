"""One runner per output folder, on any host: an exclusive ``filelock`` lock on ``OUT/.compare.lock``.

Two runners on one folder would redo each other's runs. The lock is an OS file lock (``flock``) held by the
running runner's open file, so it also holds between hosts sharing the folder (NFS, Lustre with flock) and
goes away with the process that held it (a killed runner leaves no stale lock). A file system without ``flock``
is refused in one line: there no runner could be kept out. ``OUT/.compare.owner`` says
who holds it (host, process id, start time) for the refusal's message.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from filelock import FileLock, Timeout

from chanmusic.core.errors import InputError
from chanmusic.runner.status import now

LOCK = ".compare.lock"
OWNER = ".compare.owner"


class FolderLock:
    """The held lock of one output folder; :meth:`release` frees it (also on process exit)."""

    def __init__(self, out: Path, lock: FileLock):
        self.out, self._lock = Path(out), lock

    def release(self) -> None:
        (self.out / OWNER).unlink(missing_ok=True)
        self._lock.release()


def acquire_lock(out: Path) -> FolderLock:
    """Take ``OUT``'s lock or refuse (``InputError``, naming who holds it): one runner per output folder."""
    out = Path(out)
    lock = FileLock(str(out / LOCK), timeout=0, is_singleton=False)
    try:
        lock.acquire()
    except Timeout:
        try:
            who = json.loads((out / OWNER).read_text())
            holder = f"runner {who['pid']} on {who['host']} (since {who['since']})"
        except (OSError, ValueError, KeyError):
            holder = "another runner"
        raise InputError(f"--out {out}", f"in use by {holder}",
                         "wait for it to finish (chanmusic compare --status OUT shows where it stands) "
                         "or pass another --out") from None
    except OSError as e:  # a file system without flock (ENOLCK, EOPNOTSUPP, ENOSYS): no runner could be kept out
        raise InputError(f"--out {out}", f"the file system gives no file locks ({e.strerror or e}), so a second "
                         "runner on this folder could not be refused",
                         "put --out on a file system with flock (a local disk, or NFS with its lock daemon)") from e
    except NotImplementedError as e:  # filelock's own word for a file system without flock
        raise InputError(f"--out {out}", f"the file system gives no file locks ({e})",
                         "put --out on a file system with flock (a local disk, or NFS with its lock daemon)") from e
    (out / OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": now()}))
    return FolderLock(out, lock)

"""``chanmusic prepare ARGS`` that SIGKILLs itself at one write of its cache (``tests/faults``).

    python prepare_killer.py AT COUNTER prepare ARGS...

Every write of :class:`datamodules.cache.CacheWriter` (a recording's EEG, an array, a JSON file, the finishing
checksums and rename) appends one byte to the file ``COUNTER``; write number ``AT`` kills the process before it
happens (``AT`` 0: never).
"""
import os
import signal
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2])]
from datamodules import cache  # noqa: E402

at, counter = int(sys.argv[1]), Path(sys.argv[2])


def counted(fn):
    def write(*a, **k):
        with open(counter, "a") as fh:
            fh.write("x")
        if counter.stat().st_size == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return fn(*a, **k)
    return write


for name in ("append_eeg", "save_array", "save_json", "open_array", "finish"):
    setattr(cache.CacheWriter, name, counted(getattr(cache.CacheWriter, name)))

from chanmusic.cli import main  # noqa: E402

main(sys.argv[3:])

"""``python -m datamodules.synthetic_tracking DIR [--snr-db -9] [--no-music]``: write a tracking set."""
from __future__ import annotations

import argparse
import sys

from .layout import NMEDT_STIMULI
from .writer import write_synthetic_tracking


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m datamodules.synthetic_tracking", description=__doc__)
    p.add_argument("root", help="folder to write (NMED-T layout; audio in ROOT/stimuli)")
    p.add_argument("--snr-db", type=float, default=-9.0,
                   help="music response vs everything else per responding channel, in dB (default -9)")
    p.add_argument("--no-music", action="store_true",
                   help="write the same background with no music response (the control set for the same seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of every draw (default 0)")
    p.add_argument("--subjects", type=int, default=4, help="number of participants, ids 2, 3, … (default 4)")
    p.add_argument("--songs", type=int, default=10, help="number of songs, song21 onwards (default 10)")
    p.add_argument("--duration", type=float, default=90.0, help="seconds per song (default 90)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier set in ROOT")
    a = p.parse_args(argv)
    if not 1 <= a.songs <= len(NMEDT_STIMULI) or a.subjects < 1:
        p.error(f"--songs must be 1-{len(NMEDT_STIMULI)} and --subjects at least 1")
    try:
        root = write_synthetic_tracking(a.root, seed=a.seed, snr_db=None if a.no_music else a.snr_db,
                                        subjects=tuple(range(2, 2 + a.subjects)), stimuli=NMEDT_STIMULI[:a.songs],
                                        duration_s=a.duration, overwrite=a.overwrite)
    except (ValueError, FileExistsError) as e:
        print(f"chanmusic: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m datamodules.synthetic_dipole ROOT [--seed 0] [--snr-db -9] [--subjects 6] [--songs 10]
[--duration 180] [--highpass 0.3] [--no-music]``: write the dipole synthetic set (NMED-T layout, with audio) to ROOT."""
from __future__ import annotations

import argparse
import sys
import time

from . import write_dipole_set


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m datamodules.synthetic_dipole", description=__doc__)
    p.add_argument("root")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--snr-db", type=float, default=-9.0)
    p.add_argument("--subjects", type=int, default=6)
    p.add_argument("--songs", type=int, default=10)
    p.add_argument("--duration", type=float, default=180.0, help="seconds of EEG per recording")
    p.add_argument("--highpass", type=float, default=0.3,
                   help="the release's high-pass in Hz (0 = none: keep the slow responses and slow noise)")
    p.add_argument("--no-music", action="store_true", help="write the noise only (a control set)")
    a = p.parse_args(argv)
    t0 = time.time()
    try:
        root = write_dipole_set(a.root, seed=a.seed, snr_db=a.snr_db, n_subjects=a.subjects, n_songs=a.songs,
                         duration_s=a.duration, music=not a.no_music, highpass_hz=a.highpass or None)
    except ValueError as e:
        print(f"chanmusic: error: {e}", file=sys.stderr)
        return 2
    print(f"[synthetic_dipole] wrote {root} in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

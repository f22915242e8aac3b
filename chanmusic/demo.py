"""``make demo`` = ``chanmusic compare --profile demo --out demo_out``: this module only forwards to the runner.

    python -m chanmusic.demo [--out DIR] [any other `chanmusic compare` option]

The demo is the ``demo`` profile of ``experiments/paper.yaml`` (demo data written if absent, every stage once,
tables, the listening report); see :mod:`chanmusic.runner.compare`.
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Run the demo profile (``--out demo_out`` unless given)."""
    from chanmusic.runner.compare import main as compare

    argv = list(sys.argv[1:] if argv is None else argv)
    compare(["--profile", "demo"] + ([] if "--out" in argv else ["--out", "demo_out"]) + argv)


if __name__ == "__main__":
    main()

"""Commands that train nothing never import Lightning (~5 CPU-s, mostly torchmetrics -> torchvision ->
torch._dynamo): ``chanmusic --help`` and the ``compare`` parent, which only starts worker processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _modules_after(code: str) -> dict[str, bool]:
    probe = code + "\nimport json, sys\nprint(json.dumps({m: m in sys.modules for m in ('lightning', 'torch')}))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_help_and_the_compare_entry_do_not_import_lightning():
    got = _modules_after("import contextlib, io\nfrom chanmusic.cli import main\n"
                         "with contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])\n"
                         "import chanmusic.runner.compare")
    assert got == {"lightning": False, "torch": False}


def test_the_cli_class_is_still_reachable_by_name():
    got = _modules_after("import chanmusic.cli as c\nassert c.ChanMusicCLI.__name__ == 'ChanMusicCLI'\n"
                         "assert c.ChanMusicCLI is c.ChanMusicCLI\nassert c.NMEDDataModule.__name__ == 'NMEDDataModule'")
    assert got["lightning"]

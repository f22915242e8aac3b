"""Run code in a fresh interpreter as if lightly and librosa were not installed, for the project's own files only:
third-party packages that probe for them (torchmetrics imports librosa when it finds it) still see them."""
from __future__ import annotations

import subprocess
import sys

UNINSTALL = ("import sys, os\n"
             "ROOT = os.environ['CHANMUSIC_ROOT']\n"
             "class _Gone:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] not in ('lightly', 'librosa'):\n"
             "            return None\n"
             "        f = sys._getframe(1)\n"
             "        while f is not None and f.f_code.co_filename.startswith('<'):\n"
             "            f = f.f_back\n"
             "        own = f is not None and f.f_code.co_filename.startswith(ROOT)\n"
             "        if own and not f.f_code.co_filename.startswith(sys.prefix + os.sep):  # a venv in the checkout\n"
             "            raise ModuleNotFoundError(f'{name} (blocked for {f.f_code.co_filename})')\n"
             "sys.meta_path.insert(0, _Gone())\n")


def run_uninstalled(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where the project's own files cannot import lightly or librosa."""
    import os
    from pathlib import Path

    env = dict(os.environ, CHANMUSIC_ROOT=str(Path(__file__).resolve().parents[2]) + os.sep)
    return subprocess.run([sys.executable, "-c", UNINSTALL + code], capture_output=True, text=True, timeout=300,
                          env=env)

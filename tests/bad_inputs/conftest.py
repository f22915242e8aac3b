"""The bad-input suite: every input a hostile new user tried (issue 18) and the ones handled before it.

Each case runs the real command line (``chanmusic.cli.main``, in-process, so the suite stays cheap; one case runs
the console script in a subprocess) and asserts the exit code, exactly one
``chanmusic: error: <file/field>: <what> — <fix>`` line naming the file or field, no traceback, and that nothing
claims success (no cache manifest, checkpoint or ``metrics.json`` appears). Cases that must *work* (a 250 Hz set
with ``--data.expected_sfreq 250``, a test with the fit's split) check the result. Every new input path adds its
bad cases here: settings (``test_bad_settings.py``), data and cache (``test_bad_data.py``), runs, checkpoints
and tests (``test_bad_runs.py``). Tools: ``tests/tooling/cli_cases.py``.
"""
from __future__ import annotations

import pytest

from chanmusic.cli import main
from tooling.cli_cases import World


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    w = World(tmp_path_factory.mktemp("bad_inputs"))
    try:
        main(["fit", *map(str, w.args())])
    except SystemExit as e:  # pragma: no cover - the fixture's fit must work
        raise AssertionError(f"the fixture's fit failed (exit {e.code})") from e
    w.run = w.runs / "demo" / "version_0"
    w.ckpts = sorted((w.run / "checkpoints").glob("*.ckpt"))
    assert w.ckpts and (w.run / "config.yaml").is_file()
    return w

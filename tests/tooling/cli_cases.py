"""The bad-input suite's tools (``tests/bad_inputs/``): run ``chanmusic`` in-process, assert a refusal, and the
tiny demo set every case starts from."""
from __future__ import annotations

import shutil
from pathlib import Path

from chanmusic.cli import main
from datamodules.synthetic import write_demo

ROOT = Path(__file__).resolve().parents[2]
E = ROOT / "experiments"
STAGE = ["--config", str(E / "demo.yaml"), "--config", str(E / "align/default.yaml"),
         "--config", str(E / "encoders/linear_reference.yaml")]


def run(argv: list[str], capsys) -> tuple[int, str]:
    """``chanmusic ARGV`` in-process: (exit code, stderr)."""
    capsys.readouterr()
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    return code, capsys.readouterr().err


def files(*dirs: Path) -> set[str]:
    return {str(p) for d in dirs if d.exists() for p in d.rglob("*") if p.is_file()}


def assert_refused(code: int, err: str, where: str, exit_code: int = 2) -> str:
    """Exit code, one error line naming ``where``, a fix after the dash, no traceback; returns the line."""
    lines = [x for x in err.splitlines() if x.startswith("chanmusic: error: ")]
    assert code == exit_code, err[-2000:]
    assert len(lines) == 1, err[-2000:]
    assert "Traceback" not in err
    assert where in lines[0], lines[0]
    assert " — " in lines[0], lines[0]
    return lines[0]


class World:
    """A tiny demo set (2 songs x 2 subjects x 12 s), its cache and one fitted run, shared by the module."""

    def __init__(self, base: Path):
        self.base = base
        self.root = write_demo(base / "data", seed=0, n_subjects=2, duration_s=12.0, songs=[0, 1])
        self.cache = base / "cache"
        self.runs = base / "runs"

    def args(self, runs: Path | None = None, root: Path | None = None, cache: Path | None = None) -> list[str]:
        runs = runs or self.runs
        return STAGE + ["--data.root", root or self.root, "--data.cache_dir", cache or self.cache,
                        "--data.test_fraction", "0.25", "--data.val_fraction", "0.2", "--data.span_s", "4",
                        "--data.batch_size", "16", "--trainer.max_epochs", "1",
                        "--trainer.default_root_dir", runs, "--trainer.logger.init_args.save_dir", runs,
                        "--trainer.enable_progress_bar", "false"]

    def copy_root(self, dest: Path) -> Path:
        shutil.copytree(self.root, dest)
        return dest

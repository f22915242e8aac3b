"""Where the runner finds the experiment YAMLs: the checkout's ``experiments/``, else the installed package data
(the wheel path itself is exercised by CI: ``.ci/wheel-smoke.sh``)."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from chanmusic.core.errors import InputError
from chanmusic.runner import spec

REPO = Path(__file__).resolve().parents[1]


def test_a_checkout_reads_its_own_experiments_folder():
    assert spec.experiments_root() == REPO / "experiments"
    assert spec.DEFAULT_SPEC == REPO / "experiments" / "paper.yaml"


def test_an_install_without_the_yamls_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(spec, "SOURCE_ROOT", tmp_path)  # no pyproject.toml: not a checkout
    with pytest.raises(InputError, match="no experiment YAMLs"):
        spec.experiments_root()


def test_the_package_data_covers_every_experiment_yaml():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = data["chanmusic.experiments"]
    yamls = sorted(p.relative_to(REPO / "experiments") for p in (REPO / "experiments").rglob("*.yaml"))
    assert yamls and all(any(p.match(pat) or (pat.startswith("**/") and p.match(pat[3:])) for pat in patterns)
                         for p in yamls)

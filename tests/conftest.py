"""Shared pytest fixtures: small demo data sets written once per test session; one torch thread per module."""
from __future__ import annotations

import pytest
import torch

# The shared demo settings: small and fast (about 2 s to write). Tests that need other settings call
# write_demo themselves.
DEMO_KW = dict(seed=0, n_subjects=2, duration_s=20.0)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """NMED-T layout demo (10 songs × 2 subjects × 20 s, with stimuli/songNN.wav); treat as read-only."""
    from datamodules.synthetic import write_demo

    return write_demo(tmp_path_factory.mktemp("demo") / "nmed-t", dataset="nmed-t", **DEMO_KW)


@pytest.fixture(scope="session")
def demo_root_h(tmp_path_factory):
    """NMED-H layout demo (4 songs × orig/rev × hearings a/b, 2 subjects, 20 s); treat as read-only."""
    from datamodules.synthetic import write_demo

    return write_demo(tmp_path_factory.mktemp("demo") / "nmed-h", dataset="nmed-h", **DEMO_KW)


@pytest.fixture(scope="session")
def pool_root(tmp_path_factory):
    """Both layouts under one folder, as the paper pools them: ``nmed-t/`` (10 songs) and ``nmed-h/`` (4 songs, intact
    versions, hearings a/b), 2 subjects each (ids 1, 2 in both: two different people per id), 24 s; read-only."""
    from datamodules.synthetic import write_demo

    root = tmp_path_factory.mktemp("pool")
    write_demo(root / "nmed-t", dataset="nmed-t", seed=0, n_subjects=2, duration_s=24.0)
    write_demo(root / "nmed-h", dataset="nmed-h", seed=0, n_subjects=2, duration_s=24.0, conditions=("orig",))
    return root


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one torch thread is as fast and immune to oversubscription on a shared CPU. A test module
    asks for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

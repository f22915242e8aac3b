"""Issue 30: a checkpoint is tied to the CLAP its targets came from, like to its split."""
from __future__ import annotations

import json

from tooling.cli_cases import assert_refused, run


def test_test_with_another_clap_is_refused(world, capsys, tmp_path):
    """Same windows, another tiny CLAP (seed 1): the split hash is the same, the targets are not."""
    args = [*world.args(runs=tmp_path / "runs", cache=tmp_path / "cache"), "--ckpt_path", world.ckpts[0]]
    code, err = run(["test", *args, "--data.clap_seed", "1"], capsys)
    line = assert_refused(code, err, "--ckpt_path")
    assert "another CLAP" in line and "clap_seed" in line
    assert not list(tmp_path.rglob("metrics.json"))


def test_checkpoint_records_the_clap_and_the_cache(world):
    import torch

    rec = torch.load(str(world.ckpts[0]), map_location="cpu", weights_only=True)["chanmusic_provenance"]
    assert rec["clap"]["spec"] == "tiny-random" and rec["clap"]["seed"] == 0
    assert "seed 0" in rec["clap"]["model"] and ":" in rec["clap"]["embeddings"]
    man = json.loads((next(p for p in world.cache.glob("nmed-t-*") if p.is_dir()) / "manifest.json").read_text())
    assert rec["clap"]["embeddings"] == man["checksums"]["clap.npy"] and rec["cache"]["key"] == rec["cache_key"]


def test_refused_test_writes_no_logger_files(world, capsys, tmp_path):
    """A test refused for its split or CLAP leaves no TensorBoard events or hparams.yaml behind."""
    for change in (["--data.clap_seed", "1"], ["--data.test_fraction", "0.5"]):
        runs = tmp_path / "runs"
        code, err = run(["test", *world.args(runs=runs, cache=tmp_path / "cache"), "--ckpt_path", world.ckpts[0],
                         *change], capsys)
        assert_refused(code, err, "--ckpt_path")
        assert not [p for p in runs.rglob("*") if p.is_file()], list(runs.rglob("*"))

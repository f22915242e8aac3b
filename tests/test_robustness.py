"""`chanmusic robustness` (electrode-removal curves) and the cross-subject protocol YAML, on tiny demo runs."""
import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from chanmusic.evaluation.robustness import kept_channels, metrics_entries, removal_order
from chanmusic.evaluation.robustness.command import run
from chanmusic.core.electrodes import default_ch_names, distance_matrix, electrode_positions

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: no process-wide leak
ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"
NMED = default_ch_names(125)


def test_removal_orders_are_seeded_nested_and_encoder_free():
    a = removal_order(NMED, "random", 0)
    assert sorted(a.tolist()) == list(range(125))
    assert np.array_equal(a, removal_order(NMED, "random", 0))  # a function of (names, mode, seed) only
    assert not np.array_equal(a, removal_order(NMED, "random", 1))
    keep8, keep32 = kept_channels(a, 8), kept_channels(a, 32)
    assert int((~keep8).sum()) == 8 and int((~keep32).sum()) == 32
    assert bool((keep32 <= keep8).all())  # nested: k=32 removes the k=8 electrodes and more
    # region: the removed electrodes are the ones nearest to one centre (a ball on the scalp)
    r = removal_order(NMED, "region", 0)
    d = distance_matrix(electrode_positions(NMED))[r[0]]
    removed, kept = r[:40], r[40:]
    assert d[removed].max() <= d[kept].min()
    assert len({int(removal_order(NMED, "region", s)[0]) for s in range(5)}) > 1  # the centre moves with the seed


def test_metrics_entries_names():
    rows = [{"encoder": "e", "mode": m, "k": k, "seed": s, "id50_mean": 0.1 * s + k / 100, "chance": 0.02, "n": 9}
            for m in ("random", "region") for k in (0, 8) for s in (0, 1)]
    e = metrics_entries(rows)
    assert set(e) == {"id50_k0", "id50_k8", "id50_k8_region"}
    assert e["id50_k8"]["repeats"] == 2 and e["id50_k8"]["n"] == 9
    assert e["id50_k8"]["mean"] == pytest.approx(0.13) and e["id50_k8"]["std"] == pytest.approx(0.05)


@pytest.fixture(scope="module")
def runs(demo_root, tmp_path_factory):
    """Two tiny alignment runs (linear reference; channel-oriented with position embeddings) trained for two
    batches on the leave-subjects-out split of experiments/data/cross_subject.yaml; the first one tested."""
    from chanmusic.cli import lightning_main

    tmp = tmp_path_factory.mktemp("robustness")
    common = ["--config", str(EXP / "demo.yaml"), "--config", str(EXP / "align/default.yaml")]
    over = ["--data.root", str(demo_root), "--data.cache_dir", str(tmp / "cache"), "--data.batch_size", "16",
            "--trainer.default_root_dir", str(tmp / "runs"), "--trainer.logger.init_args.save_dir", str(tmp / "runs"),
            "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--trainer.enable_progress_bar", "false"]
    specs = {
        "linear": ["--config", str(EXP / "encoders/linear_reference.yaml"),
                   "--model.init_args.encoder.init_args.embed_dim", "32"],
        "co_pos": ["--config", str(EXP / "encoders/channel_oriented.yaml"),
                   "--config", str(EXP / "encoders/channel_oriented_pos.yaml"),
                   "--model.init_args.head_hidden", "32", "--model.init_args.encoder.init_args.embed_dim", "16",
                   "--model.init_args.encoder.init_args.depth", "1",
                   "--model.init_args.encoder.init_args.num_heads", "2"],
    }
    out = {}
    argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI: arguments from `args` only, not pytest's
    try:
        for name, extra in specs.items():
            cli = lightning_main(common + extra + ["--config", str(EXP / "data/cross_subject.yaml")] + over
                                 + ["--trainer.logger.init_args.name", name], run=False)
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
            if name == "linear":
                cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best")
            out[name] = (Path(cli.trainer.log_dir), cli.datamodule)
    finally:
        sys.argv = argv
    return tmp, out


def test_cross_subject_yaml_holds_out_whole_subjects(runs):
    _, out = runs
    dm = out["linear"][1]
    subj = dm.cache.segments[:, 1]
    test, seen = set(subj[dm.split.test]), set(subj[dm.split.train]) | set(subj[dm.split.val])
    assert test and seen and test.isdisjoint(seen)
    # NMED is not fully crossed the other way: the held-out subject heard the same songs as the training ones
    song = dm.cache.segments[:, 2]
    assert set(song[dm.split.test]) <= set(song[dm.split.train])


def test_robustness_curve_on_two_encoders(runs):
    tmp, out = runs
    lin, pos = out["linear"][0], out["co_pos"][0]
    before = json.loads((lin / "metrics.json").read_text())
    res = run(["--ckpt", str(lin), str(pos / "checkpoints" / "last.ckpt"), "--k", "0,8,64",
               "--mode", "random,region", "--seeds", "2", "--out", str(tmp / "curve")])
    assert res["png"].is_file() and res["png"].stat().st_size > 1000
    with open(res["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 3 * 2  # encoders × modes × k × seeds
    assert {r["encoder"] for r in rows} == {"LinearReference", "ChannelOrientedEncoder (position)"}
    assert all(float(r["chance"]) > 0 and int(r["n"]) > 2 for r in rows)
    assert {int(r["n_kept"]) for r in rows} == {125, 117, 61}
    after = json.loads((lin / "metrics.json").read_text())
    assert set(before) <= set(after)  # merged, not replaced
    for name in ("id50_k0", "id50_k8", "id50_k64", "id50_k8_region", "id50_k64_region"):
        assert set(after[name]) >= {"mean", "std", "n", "chance"}
    # nothing removed = the run's own test score (same checkpoint, same distractor draws)
    assert after["id50_k0"]["mean"] == pytest.approx(before["id50"]["mean"], abs=1e-6)
    assert "id50_k8" in json.loads((pos / "metrics.json").read_text())


def test_cli_is_registered_and_checks_arguments():
    from chanmusic.cli import EXTRA_COMMANDS
    from chanmusic.evaluation.robustness.command import parse_args

    assert EXTRA_COMMANDS["robustness"] == "chanmusic.evaluation.robustness.command:main"
    args, extra = parse_args(["--ckpt", "a", "b", "--k", "0,32", "--data.root", "X"])
    assert args.ckpt == ["a", "b"] and args.k == [0, 32] and extra == ["--data.root", "X"]
    with pytest.raises(SystemExit):
        parse_args(["--ckpt", "a", "--mode", "sideways"])
    with pytest.raises(SystemExit):
        parse_args(["--ckpt", "a", "b", "--label", "only-one"])

"""Training and testing: NaN loss, tests without weights or on another split, run folders never overwritten."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tooling.cli_cases import assert_refused, run

def test_nan_loss_stops_the_fit(world, capsys, tmp_path):
    code, err = run(["fit", *world.args(runs=tmp_path / "runs"), "--model.init_args.temperature_init", "1e-45"],
                    capsys)
    line = assert_refused(code, err, "training loss", exit_code=1)
    assert "at step 0" in line and "learning rate" in line


def test_test_without_weights_is_refused(world, capsys, tmp_path):
    for extra, where in (([], "--ckpt_path"), (["--ckpt_path", tmp_path / "nope.ckpt"], "nope.ckpt"),
                         (["--ckpt_path", "last"], "--ckpt_path"), (["--ckpt_path", "best"], "--ckpt_path")):
        code, err = run(["test", *world.args(runs=tmp_path / "runs"), *extra], capsys)  # an empty logger folder
        assert_refused(code, err, where)
    assert not list(tmp_path.rglob("metrics.json"))


def test_truncated_or_unsafe_checkpoint_is_refused_in_test(world, capsys, tmp_path):
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(world.ckpts[0].read_bytes()[:5000])
    code, err = run(["test", *world.args(runs=tmp_path / "runs"), "--ckpt_path", cut], capsys)
    assert "truncated or corrupt" in assert_refused(code, err, "cut.ckpt")


def test_test_with_the_fits_split_records_provenance(world, capsys):
    import hashlib

    code, err = run(["test", *world.args(), "--ckpt_path", "best"], capsys)
    assert code == 0, err
    metrics = sorted(world.runs.rglob("metrics.json"), key=lambda p: p.stat().st_mtime)[-1]
    prov = json.loads(metrics.read_text())["provenance"]
    ck = Path(prov["checkpoint"]["path"])
    assert prov["checkpoint"]["sha256"] == hashlib.sha256(ck.read_bytes()).hexdigest()
    assert prov["split_check"] == "same as the checkpoint's" and prov["trained_split_hash"] == prov["split"]["hash"]
    assert prov["cache"]["key"] == next(p for p in world.cache.glob("nmed-t-*") if p.is_dir()).name
    assert prov["data"]["split"]["test_fraction"] == 0.25 and prov["package"]["chanmusic"]
    assert prov["split"]["n_test"] > 0 and Path(prov["data"]["root"]).is_absolute()


@pytest.mark.parametrize("change", [["--data.test_fraction", "0.5"], ["--data.split_seed", "7"]])
def test_test_on_another_split_is_refused_unless_allowed(world, capsys, tmp_path, change):
    args = [*world.args(runs=tmp_path / "runs"), "--ckpt_path", world.ckpts[0], *change]
    code, err = run(["test", *args], capsys)
    line = assert_refused(code, err, "--ckpt_path")
    assert "another split" in line and "test windows" in line
    assert not list(tmp_path.rglob("metrics.json"))
    if change[0] == "--data.test_fraction":  # (seed 7 leaves too few test songs for within_song on this tiny set)
        code, err = run(["test", *args, "--data.allow_split_change", "true"], capsys)
        assert code == 0, err
        prov = json.loads(next(tmp_path.rglob("metrics.json")).read_text())["provenance"]
        assert prov["split_check"].startswith("changed, allowed") and prov["trained_split_hash"] != prov["split"]["hash"]


def test_checkpoint_that_does_not_fit_the_model_is_named(world, capsys, tmp_path):
    """Other windows (1 s): the linear reference's weights do not fit; named before Lightning's traceback."""
    args = [*world.args(runs=tmp_path / "runs", cache=tmp_path / "cache"), "--ckpt_path", world.ckpts[0]]
    code, err = run(["test", *args, "--data.window_s", "1.0"], capsys)
    assert "does not fit" in assert_refused(code, err, f"--ckpt_path {world.ckpts[0]}")


def test_run_folder_is_never_overwritten(world, capsys):
    cfg = world.run / "config.yaml"
    before = cfg.read_bytes()
    ckpts = {p: p.stat().st_mtime_ns for p in world.ckpts}
    for extra in (["--model.init_args.lr", "0.5"], []):   # another config; the same config as a new fit
        code, err = run(["fit", *world.args(), "--trainer.logger.init_args.version", "0", *extra], capsys)
        assert_refused(code, err, str(world.run))
    assert cfg.read_bytes() == before and {p: p.stat().st_mtime_ns for p in world.ckpts} == ckpts


def test_saved_config_works_from_another_folder(world, capsys, tmp_path, monkeypatch):
    """The saved config holds absolute data paths, so a reload from elsewhere finds the data (robustness did not)."""
    import yaml

    saved = yaml.safe_load((world.run / "config.yaml").read_text())
    assert all(Path(saved["data"][k]).is_absolute() for k in ("root", "cache_dir"))
    monkeypatch.chdir(tmp_path)
    from chanmusic.results.runs import load_run

    run_ = load_run(world.run)
    run_.datamodule.setup()
    assert run_.datamodule.cache is not None


def test_report_and_robustness_bad_paths_are_one_line(capsys, tmp_path):
    code, err = run(["report", tmp_path], capsys)
    assert_refused(code, err, "spec.json")
    code, err = run(["robustness", "--ckpt", tmp_path / "nope"], capsys)
    assert_refused(code, err, "nope")

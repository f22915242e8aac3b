"""End-to-end slice: CLI -> prepare -> fit -> test -> metrics.json, learning vs shuffled control, bad YAML."""
import json
from pathlib import Path

import pytest

from chanmusic.cli import lightning_main, main
from datamodules.synthetic import write_demo

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def strong_demo(tmp_path_factory):
    """A small demo set with a stronger music response (response_gain=3) so learning shows in seconds. Four subjects:
    the split holds out spans of time (not single windows), so what generalises is the response other subjects
    produced at the same song-time (2 subjects: id50 about 2.5x chance, 4 subjects: about 4.5x)."""
    root = tmp_path_factory.mktemp("strong") / "nmed-t"
    write_demo(root, seed=1, n_subjects=4, duration_s=60.0, songs=[0, 1, 2, 3, 4], response_gain=3.0)
    return root


def _args(root, tmp, *extra):
    return ["--config", str(ROOT / "experiments/demo.yaml"),
            "--config", str(ROOT / "experiments/align/default.yaml"),
            "--config", str(ROOT / "experiments/encoders/linear_reference.yaml"),
            "--data.root", str(root), "--data.cache_dir", str(tmp / "cache"),
            "--data.test_fraction", "0.25", "--data.batch_size", "32",
            "--trainer.max_epochs", "10", "--trainer.default_root_dir", str(tmp / "runs"),
            "--trainer.logger.init_args.save_dir", str(tmp / "runs"),
            "--trainer.enable_progress_bar", "false", *extra]


def _fit_test(args):
    cli = lightning_main(args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best")
    run_dir = Path(cli.trainer.log_dir)
    return json.loads((run_dir / "metrics.json").read_text()), run_dir


@pytest.mark.slow
def test_linear_reference_learns_and_shuffled_control_does_not(strong_demo, tmp_path):
    res, run_dir = _fit_test(_args(strong_demo, tmp_path))
    assert (run_dir / "config.yaml").exists()  # metrics.json sits beside the saved config
    for name in ("id50", "song_id", "genre_id", "within_song"):
        assert {"mean", "n", "n_way", "chance", "ci95", "draw_std"} <= set(res[name]), name
    assert res["song_id"]["n_way"] == 5 and res["song14"] is None  # 5 songs here; song14 needs the pool
    assert res["id50"]["chance"] == pytest.approx(0.02, abs=0.002)
    assert res["id50"]["mean"] >= 3 * res["id50"]["chance"], res
    shuffled, _ = _fit_test(_args(strong_demo, tmp_path, "--data.control", "shuffle"))
    p, n = shuffled["id50"]["chance"], shuffled["id50"]["n"]
    # near chance: within 3 binomial standard errors of it (n test windows)
    assert shuffled["id50"]["mean"] <= p + 3 * (p * (1 - p) / n) ** 0.5, shuffled
    assert shuffled["id50"]["mean"] < res["id50"]["mean"]


def test_unknown_encoder_is_a_clear_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", str(ROOT / "experiments/demo.yaml"),
              "--config", str(ROOT / "experiments/align/default.yaml"),
              "--model.init_args.encoder.class_path", "encoders.nope.Missing",
              "--data.root", str(tmp_path)])
    assert e.value.code != 0
    err = capsys.readouterr().err
    assert "encoders.nope.Missing" in err and "Traceback" not in err


def test_wrong_key_is_a_clear_error(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  init_args:\n    lerning_rate: 0.1\n")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(ROOT / "experiments/demo.yaml"),
              "--config", str(ROOT / "experiments/align/default.yaml"),
              "--config", str(ROOT / "experiments/encoders/linear_reference.yaml"),
              "--config", str(bad), "--data.root", str(tmp_path)])
    err = capsys.readouterr().err
    assert "lerning_rate" in err and "Traceback" not in err

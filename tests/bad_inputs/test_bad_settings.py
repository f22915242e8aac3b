"""Bad settings and config files: refused in one line before any work (``--data.*``, YAML, the console script)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from chanmusic.cli import main
from tooling.cli_cases import ROOT, assert_refused, files, run

SETTINGS = [
    (["--data.clip", "0"], "--data.clip"),
    (["--data.clip", "-1"], "--data.clip"),
    (["--data.bandpass", "[40, 1]"], "--data.bandpass"),
    (["--data.bandpass", "[1, 70]"], "--data.bandpass"),               # above Nyquist (62.5 Hz)
    (["--data.bandpass", "[1, 40]", "--data.resample", "64"], "--data.bandpass"),
    (["--data.bandpass", "[0, 40]"], "--data.bandpass"),
    (["--data.window_s", "0.001"], "--data.window_s"),                 # was ZeroDivisionError
    (["--data.window_s", "-2"], "--data.window_s"),
    (["--data.stride_s", "0"], "--data.stride_s"),
    (["--data.stride_s", "0.001"], "--data.stride_s"),
    (["--data.resample", "0"], "--data.resample"),                     # was ZeroDivisionError
    (["--data.test_fraction", "1.5"], "--data.test_fraction"),
    (["--data.test_fraction", "0"], "--data.test_fraction"),
    (["--data.val_fraction", "-0.1"], "--data.val_fraction"),
    (["--data.split", "block", "--data.test_fraction", "0.6", "--data.val_fraction", "0.5"], "--data.val_fraction"),
    (["--data.gap_s", "-1"], "--data.gap_s"),
    (["--data.scaling", "foo"], "--data.scaling"),
    (["--data.dataset", "nmed-x"], "--data.dataset"),
    (["--data.control", "bogus"], "--data.control"),
    (["--data.control", "shift", "--data.shift_fraction", "1.5"], "--data.shift_fraction"),
    (["--data.split", "bogus"], "--data.split"),
    (["--data.split", "hearing"], "--data.split"),                      # NMED-T has one hearing
    (["--data.songs", "[99]"], "--data.songs"),
    (["--data.songs", "[12]"], "--data.songs"),                         # an NMED-H song
    (["--data.subjects", "[]"], "--data.subjects"),
    (["--data.subjects", "[1, 1]"], "--data.subjects"),
    (["--data.conditions", "[bogus]"], "--data.conditions"),
    (["--data.test_subjects", "[1]"], "--data.test_subjects"),          # split is random
    (["--data.split", "subjects", "--data.subjects", "[1]", "--data.test_subjects", "[1]"], "--data.test_subjects"),
    (["--data.batch_size", "0"], "--data.batch_size"),
    (["--data.num_workers", "-1"], "--data.num_workers"),
    (["--data.clap_dim", "0"], "--data.clap_dim"),
    (["--data.expected_sfreq", "0"], "--data.expected_sfreq"),
    (["--data.clip", "abc"], "--data.clip"),                            # parse error
    (["--data.nope", "1"], "--data.nope"),  # an unknown option is named (with the nearest valid one)
    (["--data.root", "/nonexistent/chanmusic"], "/nonexistent/chanmusic"),
]


@pytest.mark.parametrize("command", ["prepare", "fit"])
@pytest.mark.parametrize("extra,where", SETTINGS, ids=[" ".join(a) for a, _ in SETTINGS])
def test_bad_setting_is_one_line_before_any_work(world, capsys, tmp_path, command, extra, where):
    args = world.args(runs=tmp_path / "runs", cache=tmp_path / "cache")
    code, err = run([command, *args, *extra], capsys)
    assert_refused(code, err, where)
    assert not files(tmp_path / "runs", tmp_path / "cache"), "a refused command wrote output"


@pytest.mark.parametrize("text,where", [("data:\n  root: [unclosed\n", "bad.yaml:3:1"),
                                        ("- a\n- b\n", "bad.yaml"),
                                        ("data: {clip: 0}\n", "--data.clip")])
def test_bad_config_file_is_named(world, capsys, tmp_path, text, where):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    for command in ("fit", "prepare"):
        code, err = run([command, *world.args(runs=tmp_path / "runs"), "--config", bad], capsys)
        assert_refused(code, err, where)
    code, err = run(["fit", "--config", tmp_path / "missing.yaml"], capsys)
    assert_refused(code, err, "missing.yaml")


def test_debug_shows_the_traceback(world, capsys, tmp_path):
    with pytest.raises(Exception, match="--data.clip"):
        main(["fit", *map(str, world.args(runs=tmp_path / "runs")), "--data.clip", "0", "--debug"])


def test_console_script_prints_one_line_and_no_warning(world, tmp_path):
    """The installed entry point itself: exit 2, one line, no LightningCLI argv warning, no traceback."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", "from chanmusic.cli import main; main()", "fit",
           *map(str, world.args(runs=tmp_path / "runs")), "--data.clip", "0"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert_refused(r.returncode, r.stderr, "--data.clip")
    assert "LightningCLI's args parameter" not in r.stderr + r.stdout


def test_error_line_finds_the_project_error_in_a_chain():
    from chanmusic.core.errors import InputError, error_exit_code, error_line

    try:
        try:
            raise InputError("--data.x", "is bad", "fix it")
        except InputError as inner:
            raise RuntimeError("a library wrapped it") from inner
    except RuntimeError as e:
        assert error_line(e) == "chanmusic: error: --data.x: is bad — fix it" and error_exit_code(e) == 2
    line = error_line(KeyError("surprise"))
    assert line.startswith("chanmusic: error: KeyError:") and "--debug" in line and error_exit_code(KeyError()) == 1


CO = ["--config", str(ROOT / "experiments/encoders/channel_oriented.yaml")]
CLASS_ARGS = [  # a class the config names refuses its own arguments (jsonargparse wraps its ValueError)
    ([*CO, "--model.init_args.encoder.init_args.patch_size", "0"], "model: patch_size"),
    ([*CO, "--model.init_args.encoder.init_args.channel_gain_std", "-1"], "model: channel_gain_std"),
]


@pytest.mark.parametrize("extra,where", CLASS_ARGS, ids=[a[-2] for a, _ in CLASS_ARGS])
def test_a_class_refusing_its_arguments_is_one_line(world, capsys, tmp_path, extra, where):
    args = world.args(runs=tmp_path / "runs", cache=tmp_path / "cache")
    line = assert_refused(*run(["fit", *args, *extra], capsys), where)
    assert "Union subtypes" not in line and "unexpected" not in line
    assert not files(tmp_path / "runs"), "a refused command wrote output"

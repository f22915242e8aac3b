"""The console script describes itself: every command in ``--help``, ``--version``, short stage names, a page of
``fit --help``, typed choices, and options that are never abbreviated (a typo names the nearest valid option)."""
from __future__ import annotations

import typing
from importlib import metadata

import pytest

import chanmusic
from chanmusic.cli import COMMANDS, main
from chanmusic.core.errors import InputError
from chanmusic.core.options import StrictArgumentParser

ALL_COMMANDS = ["fit", "validate", "test", "predict", "prepare", "compare", "report", "robustness"]


def test_help_lists_every_command_with_one_line(capsys):
    main(["--help"])
    out = capsys.readouterr().out.splitlines()
    for cmd in ALL_COMMANDS:
        lines = [ln for ln in out if ln.startswith(f"  {cmd} ")]
        assert len(lines) == 1 and len(lines[0].split(None, 1)[1]) > 10, cmd
    assert set(COMMANDS) == set(ALL_COMMANDS)


def test_version_is_the_installed_distributions(capsys):
    main(["--version"])
    assert capsys.readouterr().out.strip() == f"chanmusic {metadata.version('chanmusic')}"
    assert chanmusic.__version__ == metadata.version("chanmusic")


def test_a_misspelt_command_names_the_nearest(capsys):
    with pytest.raises(SystemExit) as e:
        main(["comapre"])
    assert e.value.code == 2
    assert "did you mean compare?" in capsys.readouterr().err


def test_compare_refuses_an_abbreviation_and_names_the_option():
    from chanmusic.runner.compare import parse_args

    with pytest.raises(InputError, match=r"--seed .*did you mean --seeds\?"):
        parse_args(["--seed", "3"])
    assert parse_args(["--seeds", "3"])[0].seeds == 3


def test_strict_parser_suggests_nothing_for_a_stranger():
    p = StrictArgumentParser(prog="x")
    p.add_argument("--alpha")
    with pytest.raises(InputError, match="see --help"):
        p.parse_args(["--zzzzzz", "1"])


def test_lightning_cli_refuses_an_abbreviated_trainer_option(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["fit", "--data.root", str(tmp_path), "--model", "AlignModule", "--trainer.max_epoch", "1"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean --trainer.max_epochs?" in err[0], err


def test_stage_and_encoder_by_short_name(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["fit", "--data.root", str(tmp_path), "--model", "AlignModule",
              "--model.encoder", "LinearReference", "--print_config"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "class_path: chanmusic.stages.align.AlignModule" in out
    assert "class_path: encoders.linear_reference.LinearReference" in out


def test_fit_help_is_a_page_and_the_stage_help_lists_no_torch_nn(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    fit_help = capsys.readouterr().out
    assert len(fit_help.splitlines()) <= 250
    assert "{zscore,robust,none}" in fit_help and "{random,block,hearing,subjects,songs}" in fit_help
    with pytest.raises(SystemExit):
        main(["fit", "--model.help", "AlignModule"])
    stage_help = capsys.readouterr().out
    assert "torch.nn" not in stage_help and "encoders.channel_oriented.ChannelOrientedEncoder" in stage_help
    assert len(stage_help.splitlines()) <= 150


def test_data_choices_are_the_validated_ones():
    from chanmusic.core.constants import CONTROLS, SPLIT_MODES
    from datamodules import datamodule
    from datamodules.validate import SCALINGS

    assert typing.get_args(datamodule.Scaling) == SCALINGS
    assert typing.get_args(datamodule.SplitMode) == SPLIT_MODES
    assert typing.get_args(datamodule.Control) == CONTROLS


def test_a_choice_outside_the_literal_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["fit", "--data.root", str(tmp_path), "--model", "AlignModule", "--data.scaling", "minmax"])
    assert e.value.code == 2
    assert "minmax" in capsys.readouterr().err

"""The table's note on the paper row is read from the run's saved settings (not from today's YAMLs)."""
import json

import yaml

from chanmusic.report.recipe import recipe_note
from chanmusic.report.rows import RowResult


#: the settings' names before the rename (docs/stages.md): runs of the earlier release saved these
ALIGN_OLD = {"init_from": "init_encoder_from", "init_from_encoder": "init_encoder_weights"}
PRETRAIN_OLD = {"channel_dropout": "student_channel_drop", "channel_dropout_mode": "channel_drop_mode"}


def _named(settings, old, old_names):
    return {old.get(k, k) if old_names else k: v for k, v in settings.items()}


def _run(tmp, head="temporal", readout="cls+tokens", gain=True, crop_resize=False, mode="cluster", old_names=False):
    run = tmp / "runs" / "channel_oriented" / "seed0" / "music"
    (run / "align").mkdir(parents=True)
    (tmp / "pre" / "pretrain").mkdir(parents=True)
    align = {"head": head, "readout": readout, "channel_dropout": 0.2, "channel_dropout_mode": mode,
             "init_from": "x.ckpt", "init_from_encoder": "teacher"}
    (run / "align" / "hparams.yaml").write_text(yaml.safe_dump(_named(align, ALIGN_OLD, old_names)))
    enc = {"channel_gain": gain, "channel_gain_std": 1.0, "channel_gain_lr_scale": 10.0}
    (run / "align" / "config.yaml").write_text(yaml.safe_dump({"model": {"init_args": {"encoder": {"init_args": enc}}}}))
    pre = {"crop_resize": crop_resize, "channel_dropout": 0.5, "channel_dropout_mode": mode}
    (tmp / "pre" / "pretrain" / "hparams.yaml").write_text(yaml.safe_dump(_named(pre, PRETRAIN_OLD, old_names)))
    (run / "status.json").write_text(json.dumps({"steps": {"align": {"dir": str(run / "align")},
                                                           "pretrain": {"dir": str(tmp / "pre")}}}))
    return RowResult(name="channel_oriented", label="Channel-oriented", section="main", status="done", run_dirs=[run])


def test_note_says_what_the_run_used(tmp_path):
    note = recipe_note({"reference_row": "channel_oriented"}, [_run(tmp_path)])
    assert "head `temporal` over `cls+tokens`" in note and "gain per electrode" in note
    assert "dropout 0.2 (`cluster`)" in note and "native-rate crops" in note and "teacher" in note


def test_note_follows_the_files_not_the_repository(tmp_path):
    note = recipe_note({"reference_row": "channel_oriented"},
                       [_run(tmp_path, head="mlp", readout="tokens", gain=False, crop_resize=True, mode="random")])
    assert "head `mlp` over `tokens`" in note and "gain" not in note
    assert "resized (time-stretched) crops" in note and "(`random`)" in note


def test_no_note_without_a_finished_reference_run(tmp_path):
    row = RowResult(name="channel_oriented", label="x", section="main", status="not run")
    assert recipe_note({"reference_row": "channel_oriented"}, [row]) is None
    assert recipe_note({"reference_row": None}, [_run(tmp_path)]) is None


def test_runs_saved_before_the_rename_give_the_same_note(tmp_path):
    new = recipe_note({"reference_row": "channel_oriented"}, [_run(tmp_path / "new")])
    old = recipe_note({"reference_row": "channel_oriented"}, [_run(tmp_path / "old", old_names=True)])
    assert new == old and "student channel drop 0.5 (`cluster`)" in new and "encoder weights: teacher" in new

"""Issue 30: settings and release files whose refusal named neither the file nor the fix."""
from __future__ import annotations

import numpy as np
import scipy.io

from tooling.cli_cases import STAGE, assert_refused, run


def test_misspelled_key_in_a_config_yaml_names_that_yaml(world, capsys, tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("data:\n  windw_s: 1.0\n")
    code, err = run(["fit", *world.args(runs=tmp_path / "runs"), "--config", bad], capsys)
    line = assert_refused(code, err, str(bad))
    assert "data.windw_s" in line and "command line" not in line


def test_malformed_compare_spec_names_the_file(capsys, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("title: x\nrows: [a, b\nprofiles: {}\n")
    code, err = run(["compare", "--config", spec, "--dry-run", "--out", tmp_path / "out"], capsys)
    line = assert_refused(code, err, str(spec))
    assert "invalid YAML" in line and "<unicode string>" not in line


def _edit_first_mat(root, edit):
    path = sorted(root.glob("song*_Imputed.mat"))[0]
    m = scipy.io.loadmat(str(path))
    edit(m)
    scipy.io.savemat(str(path), {k: v for k, v in m.items() if not k.startswith("__")}, format="5")
    return path


def test_124_channels_and_duplicate_subjects_get_a_fix(world, capsys, tmp_path):
    for name, edit, words in (
        ("ch124", lambda m: m.update({k: v[:124] for k, v in m.items() if k.startswith("data")}), "re-download"),
        ("dup_subs", lambda m: m.update({k: np.full_like(v, np.ravel(v)[0]) for k, v in m.items()
                                          if k.startswith("subs")}), "once"),
    ):
        root = world.copy_root(tmp_path / name)
        path = _edit_first_mat(root, edit)
        code, err = run(["prepare", *STAGE, "--data.root", root, "--data.cache_dir", tmp_path / "cache"], capsys)
        line = assert_refused(code, err, path.name)
        assert words in line.split(" — ", 1)[1], line


def test_init_from_a_checkpoint_of_another_encoder_gets_a_fix(world, capsys, tmp_path):
    import torch

    ck = torch.load(str(world.ckpts[0]), map_location="cpu", weights_only=True)
    sd = {k: (v[..., :1] if v.ndim > 1 else v) for k, v in ck["state_dict"].items()}  # other shapes
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": sd}, other)
    code, err = run(["fit", *world.args(runs=tmp_path / "runs"), "--model.init_args.init_from", other], capsys)
    line = assert_refused(code, err, "other.ckpt")
    assert "model.init_args.encoder" in line.split(" — ", 1)[1]

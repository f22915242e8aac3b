"""The full profile pretrains as the paper does (issue 28 item 6): 8-s windows, so DINO's global and local crops are
really shorter than the window, each student view with its own random channel subset; and the 8-s weights load
strictly into the 1-s alignment of every row of the channel-oriented family.

The settings come from the full profile's own pretraining step (``chanmusic.runner.plan.pretrain_step`` over
``experiments/paper.yaml``), not from constants here; the window length in samples is NMED's 125 Hz.
"""
from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import torch
import yaml

from chanmusic.core.electrodes import NMED_CH_NAMES
from chanmusic.runner.plan import pretrain_step, run_steps, RunPlan
from chanmusic.runner.spec import DEFAULT_SPEC, EXPERIMENTS, deep_merge, load_spec
from chanmusic.stages.init_from import load_encoder_weights
from chanmusic.stages.pretrain import PretrainModule

SFREQ, C = 125.0, 125  # NMED's release rate and electrodes


def merged(step) -> dict:
    """The step's YAML list then its settings, merged as the CLI reads them (later wins)."""
    cfg: dict = {}
    for p in step.configs:
        cfg = deep_merge(cfg, yaml.safe_load(Path(p).read_text()) or {})
    return deep_merge(cfg, step.set)


def row(spec, name):
    return next(r for r in spec.rows if r.name == name)


def build_encoder(cfg: dict):
    """The encoder of a merged config on NMED's montage; init_args the class does not take are dropped, as the CLI
    does when a later YAML changes the class_path (the block-token ablation)."""
    enc = cfg["model"]["init_args"]["encoder"]
    mod, name = enc["class_path"].rsplit(".", 1)
    cls = getattr(importlib.import_module(mod), name)
    takes = inspect.signature(cls).parameters
    n_times = int(round(float(cfg["data"]["window_s"]) * SFREQ))
    return cls(C, SFREQ, n_times, list(NMED_CH_NAMES), **{k: v for k, v in enc["init_args"].items() if k in takes})


def pretraining(profile: str, tmp_path: Path, name: str = "channel_oriented"):
    spec = load_spec(DEFAULT_SPEC, profile, out=tmp_path)
    step = pretrain_step(spec, tmp_path, row(spec, name), tmp_path / "pre", 0)
    cfg = merged(step)
    torch.manual_seed(0)
    enc = build_encoder(cfg)
    init = {k: v for k, v in cfg["model"]["init_args"].items() if k != "encoder"}
    return spec, cfg, PretrainModule(enc, **init)


def saved(module: PretrainModule, path: Path) -> Path:
    """A pretraining checkpoint of ``module`` (its state dict, as Lightning writes it)."""
    torch.save({"state_dict": module.state_dict()}, path)
    return path


def views_of(module: PretrainModule, draws: int = 6):
    """Lengths of the global and local crops and the student masks over ``draws`` batches of 2 windows."""
    g = torch.Generator().manual_seed(0)
    T = int(module.encoder.n_times)
    glob, loc, masks = [], [], []
    for _ in range(draws):
        v = module.crops(torch.randn(2, C, T), g)
        glob += [x.shape[-1] for x in v.global_views]
        loc += [x.shape[-1] for x in v.local_views]
        masks += [module.drop(torch.ones(2, C, dtype=torch.bool), g) for _ in v.local_views]
    return T, glob, loc, masks


def test_full_profile_pretrains_on_8s_windows_with_real_crops_and_channel_subsets(tmp_path):
    spec, cfg, module = pretraining("full", tmp_path)
    eight = yaml.safe_load((EXPERIMENTS / "data" / "pretrain_8s.yaml").read_text())["data"]
    assert {k: cfg["data"][k] for k in eight} == eight  # the paper's 8-s windows, hop 6.4 s
    T, glob, loc, masks = views_of(module)
    patch = int(module.encoder.patch_size)
    assert T == 1000
    # global crops: half to all of the window, in whole patches, and some really shorter than it
    assert all(T // 2 - patch <= n <= T and n % patch == 0 for n in glob) and min(glob) < T
    # local crops: at most half the window, shorter than every global crop
    assert max(loc) <= T // 2 and max(loc) < min(glob) and all(n % patch == 0 and n >= patch for n in loc)
    # each student view removes its own random subset of electrodes (structured dropout): about half, varying
    kept = [m.sum(1) for m in masks]
    assert all(((k > 0) & (k < C)).all() for k in kept)
    assert len({tuple(m[0].tolist()) for m in masks}) == len(masks)
    # the alignment (1-s windows) of every row that loads this pretraining reads the 8-row time table strictly
    ckpt = saved(module, tmp_path / "pre.ckpt")
    for r in spec.rows:
        if not r.pretrain or r.pretrain[0] != "pretrain/channel_oriented.yaml" or r.pretrain[1:]:
            continue
        align = merged(run_steps(spec, tmp_path, RunPlan(r, 0, False, tmp_path / r.name), "PRE.ckpt")[0])
        assert float(align["data"]["window_s"]) == 1.0
        load_encoder_weights(build_encoder(align), ckpt, "teacher")  # strict: raises on any mismatch
    # block tokens: its own pretraining, on 8-s windows too, loads into its 1-s alignment
    spec, cfg, bt = pretraining("full", tmp_path, "block_tokens")
    assert float(cfg["data"]["window_s"]) == 8.0
    r = row(spec, "block_tokens")
    align = merged(run_steps(spec, tmp_path, RunPlan(r, 0, False, tmp_path / r.name), "PRE.ckpt")[0])
    load_encoder_weights(build_encoder(align), saved(bt, tmp_path / "bt.ckpt"), "teacher")


@pytest.mark.parametrize("profile", ["demo", "quick"])
def test_the_cpu_profiles_keep_their_own_pretraining_windows(tmp_path, profile):
    _, cfg, _ = pretraining(profile, tmp_path)
    assert float(cfg["data"]["window_s"]) == 2.0  # the 8-s setting is the full profile's only

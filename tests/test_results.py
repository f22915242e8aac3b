"""The results module (chanmusic.results): a metric added through the registry reaches metrics.json with no other
code; the checkpoint rule and the metrics.json file names live in one place; the schema version."""
from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torchmetrics import Metric

from chanmusic.evaluation.intervals import bootstrap_ci95
from chanmusic.results import checkpoint_rule
from chanmusic.results.layout import run_folder
from chanmusic.results.metrics_file import (SCHEMA_VERSION, SchemaError, merge_metrics, metric_entries, read_json,
                                            read_metrics)
from chanmusic.results.registry import MetricSpec, register, spec_of, std_over_draws, unregister

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"


class EmbeddingNorm(Metric):
    """A toy metric: the L2 norm of each test embedding (mean over items, bootstrap ci95)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("norms", default=[], dist_reduce_fx="cat")

    def update(self, emb: torch.Tensor) -> None:
        self.norms.append(emb.detach().float().norm(dim=1))

    def compute(self) -> dict[str, torch.Tensor]:
        v = (torch.cat(self.norms) if isinstance(self.norms, list) else self.norms).double().numpy()
        lo, hi = bootstrap_ci95(v)
        return {"mean": torch.tensor(v.mean()), "std": torch.tensor(v.std()), "n": torch.tensor(len(v)),
                "ci95_low": torch.tensor(lo), "ci95_high": torch.tensor(hi)}


@pytest.fixture()
def toy_metric():
    spec = register(MetricSpec("toy_norm", "per_item", "align", "none", build=lambda hp: EmbeddingNorm(),
                               update=lambda metric, emb, batch: metric.update(emb)))
    yield spec
    unregister(spec.name)


def test_a_metric_added_to_the_registry_is_written_by_fit_and_test(toy_metric, demo_root, tmp_path):
    from chanmusic.cli import lightning_main

    args = ["--config", str(EXP / "demo.yaml"), "--config", str(EXP / "align/default.yaml"),
            "--config", str(EXP / "encoders/linear_reference.yaml"),
            "--model.init_args.encoder.init_args.embed_dim", "16", "--model.init_args.id_repeats", "2",
            "--data.root", str(demo_root), "--data.cache_dir", str(tmp_path / "cache"), "--data.batch_size", "16",
            "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.logger.init_args.save_dir",
            str(tmp_path / "runs"), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
            "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false"]
    argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI: arguments from `args` only, not pytest's
    try:
        cli = lightning_main(args, run=False)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)
    finally:
        sys.argv = argv
    m = json.loads((Path(cli.trainer.log_dir) / "metrics.json").read_text())
    assert m["schema_version"] == SCHEMA_VERSION
    toy = m["toy_norm"]
    assert {"mean", "n", "ci95", "std"} <= set(toy) and toy["mean"] > 0 and toy["n"] == m["id50"]["n"]
    assert toy["ci95"][0] <= toy["mean"] <= toy["ci95"][1]
    assert "test/toy_norm" in cli.trainer.callback_metrics
    assert {"id50", "song_id", "song14", "embedding_spread"} <= set(m)  # the built-in ones as before
    assert spec_of("toy_norm") is toy_metric and not std_over_draws("toy_norm")


def test_registry_refuses_a_taken_name():
    with pytest.raises(ValueError, match="song14"):
        register(MetricSpec("song14", "identification", "align", "none"))
    assert spec_of("song14").name == "song_id" and spec_of("id50_k8_region").name == "id50"


def _ckpt(folder: Path, name: str, age: float) -> Path:
    p = folder / "checkpoints" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    os.utime(p, (1e9 - age, 1e9 - age))
    return p


def test_checkpoint_rule_fit_done_then_best_then_last(tmp_path):
    run = tmp_path / "run"
    last = _ckpt(run, "last.ckpt", 0)
    assert checkpoint_rule.find_checkpoint(run) == last                    # 3. only last
    _ckpt(run, "epoch=0.ckpt", 30)
    best = _ckpt(run, "epoch=1.ckpt", 20)
    assert checkpoint_rule.find_checkpoint(run) == best                    # 2. newest non-last
    chosen = _ckpt(run, "epoch=0-chosen.ckpt", 50)
    (run / "fit_done.json").write_text(json.dumps({"checkpoint": str(chosen)}))
    assert checkpoint_rule.find_checkpoint(run) == chosen                  # 1. the runner's choice
    (run / "fit_done.json").write_text(json.dumps({"checkpoint": str(run / "gone.ckpt")}))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint_rule.find_checkpoint(run)
    assert checkpoint_rule.run_dir_of(best) == run
    with pytest.raises(FileNotFoundError):
        checkpoint_rule.find_checkpoint(tmp_path / "empty")


def test_test_checkpoint_of_the_cli_follows_the_same_rule(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    trainer = SimpleNamespace(checkpoint_callbacks=[ModelCheckpoint()], logger=SimpleNamespace(root_dir=tmp_path))
    assert checkpoint_rule.earlier_best_checkpoint(trainer) is None
    _ckpt(tmp_path / "version_0", "last.ckpt", 40)
    old = _ckpt(tmp_path / "version_0", "epoch=3.ckpt", 30)
    newer_last = _ckpt(tmp_path / "version_1", "last.ckpt", 5)
    assert checkpoint_rule.earlier_last_checkpoint(trainer) == newer_last
    assert checkpoint_rule.earlier_best_checkpoint(trainer) == old
    chosen = _ckpt(tmp_path / "version_0", "epoch=1.ckpt", 60)
    (tmp_path / "version_0" / "fit_done.json").write_text(json.dumps({"checkpoint": str(chosen)}))
    assert checkpoint_rule.earlier_best_checkpoint(trainer) == chosen == checkpoint_rule.find_checkpoint(
        tmp_path / "version_0")


def test_the_checkpoint_rule_and_file_names_have_one_home():
    import chanmusic.cli as cli
    import chanmusic.results.runs as runs

    assert cli.earlier_best_checkpoint is checkpoint_rule.earlier_best_checkpoint
    assert cli.earlier_last_checkpoint is checkpoint_rule.earlier_last_checkpoint
    assert runs.find_checkpoint is checkpoint_rule.find_checkpoint
    home = ROOT / "chanmusic" / "results"
    strays = []
    for path in (ROOT / "chanmusic").rglob("*.py"):
        if home in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in ("fit_done.json", "metrics.json"):
                strays.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.FunctionDef) and node.name in ("find_checkpoint", "read_json", "run_folder"):
                strays.append(f"{path.relative_to(ROOT)}:{node.lineno} def {node.name}")
    assert strays == []


def test_metrics_json_schema_version(tmp_path):
    path = tmp_path / "run" / "metrics.json"
    merge_metrics(path, {"id50": {"mean": 0.1, "n": 3}, "song14": None}, {"song14": "needs the pool"})
    first = json.loads(path.read_text())
    assert list(first)[0] == "schema_version" and first["schema_version"] == SCHEMA_VERSION
    assert first["song14"] is None and first["unavailable"] == {"song14": "needs the pool"}
    merge_metrics(path, {"id50_k8": {"mean": 0.05, "n": 3}}, provenance={"argv": ["x"]})
    merged = read_metrics(path)
    assert set(metric_entries(merged)) == {"id50", "id50_k8"} and merged["provenance"] == {"argv": ["x"]}
    legacy = tmp_path / "legacy.json"  # a file from before the version field: read as it is, versioned on merge
    legacy.write_text(json.dumps({"id50": {"mean": 0.2}}))
    assert read_metrics(legacy) == {"id50": {"mean": 0.2}}
    assert json.loads(merge_metrics(legacy, {}).read_text()) == {"schema_version": SCHEMA_VERSION,
                                                                  "id50": {"mean": 0.2}}
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(SchemaError, match="schema version"):
        merge_metrics(newer, {"id50": {"mean": 0.3}})
    (tmp_path / "half.json").write_text('{"id50": ')
    assert read_json(tmp_path / "half.json") is None and read_json(tmp_path / "missing.json") is None


def test_run_folder_layout(tmp_path):
    assert run_folder(tmp_path, "ours", 2, True) == tmp_path / "runs" / "ours" / "seed2" / "control"
    assert run_folder(tmp_path, "ours", 0, False, fold=1) == tmp_path / "runs" / "ours" / "fold1" / "seed0" / "music"

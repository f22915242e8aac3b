"""Settings renamed to one name per idea (docs/stages.md) are still read under their old names for one release: the
value is used, one logged line names old → new, the saved hyperparameters carry the new name only, and giving both
names with different values is an error."""
import logging
from pathlib import Path

import pytest
import torch
import yaml

from chanmusic.cli import lightning_main
from chanmusic.stages.align import AlignModule
from chanmusic.stages.pretrain import PretrainModule
from chanmusic.stages.reconstruct import ReconstructModule
from encoders.channel_oriented import ChannelOrientedEncoder
from encoders.linear_reference import LinearReference
from tooling.tiny_foundation import C, N_TIMES, NAMES, SFREQ, TINY

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def warned():
    """The chanmusic logger's warnings (it may not propagate once the CLI has set up its own handler)."""
    log = logging.getLogger("chanmusic")
    h = _Records()
    log.addHandler(h)
    yield h
    log.removeHandler(h)


def _said(warned, old: str, new: str) -> bool:
    return any(f"{old} is deprecated → {new}" in r.getMessage() for r in warned.records)


def _encoder():
    torch.manual_seed(0)
    return ChannelOrientedEncoder(8, 64.0, 128, embed_dim=16, depth=1, num_heads=2, patch_size=32)


@pytest.fixture
def pretrain_ckpt(tmp_path):
    m = PretrainModule(_encoder(), out_dim=16, head_hidden_dim=16, bottleneck_dim=8)
    with torch.no_grad():
        for p in m.teacher_encoder.parameters():
            p.add_(0.5)
    path = tmp_path / "pre.ckpt"
    torch.save({"state_dict": m.state_dict(), "chanmusic_encoders": {"student": "encoder.",
                                                                     "teacher": "teacher_encoder."}}, path)
    return path, m


def test_alignment_reads_init_encoder_from_and_init_encoder_weights(pretrain_ckpt, warned):
    path, pre = pretrain_ckpt
    m = AlignModule(_encoder(), clap_dim=8, init_encoder_from=str(path), init_encoder_weights="student")
    assert _said(warned, "model.init_args.init_encoder_from", "model.init_args.init_from")
    assert _said(warned, "model.init_args.init_encoder_weights", "model.init_args.init_from_encoder")
    assert m.hparams.init_from == str(path) and m.hparams.init_from_encoder == "student"
    assert not {"init_encoder_from", "init_encoder_weights"} & set(m.hparams)
    for k, v in pre.encoder.state_dict().items():  # the student, as the old name asked
        assert torch.equal(m.encoder.state_dict()[k], v)
    new = AlignModule(_encoder(), clap_dim=8, init_from=str(path), init_from_encoder="student")
    assert all(torch.equal(a, b) for a, b in zip(new.state_dict().values(), m.state_dict().values()))


def test_both_names_with_different_values_is_an_error(pretrain_ckpt, tmp_path):
    with pytest.raises(ValueError, match="init_encoder_from: renamed init_from, and both are given .* keep init_from"):
        AlignModule(_encoder(), clap_dim=8, init_encoder_from=str(pretrain_ckpt[0]), init_from=str(tmp_path / "x"))


def test_pretraining_reads_its_old_names(warned):
    m = PretrainModule(_encoder(), out_dim=16, head_hidden_dim=16, bottleneck_dim=8, student_channel_drop=0.3,
                       channel_drop_mode="random", pool="mean", channel_drop_clusters=3)
    for old, new in (("student_channel_drop", "channel_dropout"), ("channel_drop_mode", "channel_dropout_mode"),
                     ("pool", "readout"), ("channel_drop_clusters", "channel_dropout_clusters")):
        assert _said(warned, f"model.init_args.{old}", f"model.init_args.{new}")
        assert old not in m.hparams
    assert (m.hparams.channel_dropout, m.hparams.channel_dropout_mode, m.hparams.readout,
            m.hparams.channel_dropout_clusters) == (0.3, "random", "mean", 3)
    assert (m.channel_dropout.rate, m.channel_dropout.mode, m.channel_dropout.n_clusters) == (0.3, "random", 3)


def test_reconstruction_reads_align_checkpoint(tmp_path, warned):
    torch.manual_seed(0)
    aligned = AlignModule(LinearReference(4, 125.0, 250), head="linear")
    path = tmp_path / "align.ckpt"
    torch.save({"state_dict": aligned.state_dict(), "hyper_parameters": dict(aligned.hparams)}, path)
    rec = ReconstructModule(LinearReference(4, 125.0, 250), align_checkpoint=str(path), encoder_source="config")
    assert _said(warned, "model.init_args.align_checkpoint", "model.init_args.init_from")
    assert rec.hparams.init_from == str(path) and "align_checkpoint" not in rec.hparams
    assert rec.aligned_checkpoint == str(path) and rec.test_without_checkpoint()
    assert torch.equal(rec.head.proj.weight, aligned.head.proj.weight)


def test_encoders_read_pretrained_and_pooling(warned):
    cls, kw = TINY["labram"]
    enc = cls(C, SFREQ, N_TIMES, NAMES, pooling="cls", **kw)
    assert enc.readout == "cls"
    assert _said(warned, "model.init_args.encoder.init_args.pooling", "model.init_args.encoder.init_args.readout")
    with pytest.raises(Exception, match="init_from: .*not found"):  # the old name reaches the new loader
        cls(C, SFREQ, N_TIMES, NAMES, pretrained="/no/such/labram-base.pth", **kw)


def test_old_yaml_keys_through_the_cli(tmp_path, warned):
    """A pretraining YAML written with the old names builds the same stage as the shipped one (new names)."""
    shipped = yaml.safe_load((EXP / "pretrain/channel_oriented.yaml").read_text())
    init = shipped["model"]["init_args"]
    old = dict(init)
    for o, n in (("student_channel_drop", "channel_dropout"), ("channel_drop_mode", "channel_dropout_mode"),
                 ("channel_drop_clusters", "channel_dropout_clusters"), ("pool", "readout")):
        old[o] = old.pop(n)
    (tmp_path / "old.yaml").write_text(yaml.safe_dump({"model": {**shipped["model"], "init_args": old}}))

    def build(config):
        args = ["--config", str(EXP / "demo.yaml"), "--config", str(config), "--data.root", str(tmp_path),
                "--trainer.default_root_dir", str(tmp_path / "runs"),
                "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")]
        torch.manual_seed(0)
        return lightning_main(args, run=False).model

    from_old = build(tmp_path / "old.yaml")
    assert _said(warned, "model.init_args.student_channel_drop", "model.init_args.channel_dropout")
    from_new = build(EXP / "pretrain/channel_oriented.yaml")
    for k in ("channel_dropout", "channel_dropout_mode", "channel_dropout_clusters", "readout"):
        assert from_old.hparams[k] == from_new.hparams[k] == init[k], k
    assert all(torch.equal(a, b) for a, b in zip(from_old.state_dict().values(), from_new.state_dict().values()))

"""Each ablation differs from the full model in exactly its documented way: both modules are built through the
CLI from the shipped YAMLs (experiments/paper.yaml's rows) and compared (hyperparameters, parameters, trainable
tensors, token counts, readout source)."""
from pathlib import Path

import pytest
import torch
import yaml

from chanmusic.cli import lightning_main

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"
GAIN = "encoder.channel_gain.weight"  # alignment-only (encoders.token_gain); frozen with the encoder in the ablations


def _build(tmp, configs, *extra):
    args = []
    for c in ["demo.yaml", *configs]:
        args += ["--config", str(EXP / c)]
    args += ["--data.root", str(tmp), "--trainer.default_root_dir", str(tmp / "runs"),
             "--trainer.logger.init_args.save_dir", str(tmp / "runs"), *extra]
    torch.manual_seed(0)
    return lightning_main(args, run=False).model


def pretrain_ckpt(tmp, configs):
    """A pretraining checkpoint of ``configs`` (built by the CLI from the shipped YAMLs, weights moved)."""
    m = _build(tmp, configs)
    with torch.no_grad():  # move both away from the initialisation, and apart, as after training
        for p in m.encoder.parameters():
            p.add_(0.01)
        for p in m.teacher_encoder.parameters():
            p.add_(0.02)
    path = tmp / "pre.ckpt"
    torch.save({"state_dict": m.state_dict(), "chanmusic_encoders": {"student": "encoder.",
                                                                     "teacher": "teacher_encoder."}}, path)
    return path, m


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    return pretrain_ckpt(tmp_path_factory.mktemp("pre"), ["pretrain/channel_oriented.yaml"])


def _row(name):
    spec = yaml.safe_load((EXP / "paper.yaml").read_text())
    rows = {r["name"]: r for r in spec["rows"] + spec["ablations"]}
    return rows[name]


def _hp_diff(a, b):
    keys = set(a.hparams) | set(b.hparams)
    return {k for k in keys if a.hparams.get(k) != b.hparams.get(k)}


def _params(m):
    """The aligned model's tensors by their checkpoint names (``encoder.*``, ``head.*``, ``logit_scale``)."""
    return {n: (tuple(p.shape), p.requires_grad) for n, p in m.aligned.named_parameters()}


@pytest.fixture(scope="module")
def full(pretrained, tmp_path_factory):
    row = _row("channel_oriented")
    assert row["pretrain"] == ["pretrain/channel_oriented.yaml"]
    return _build(tmp_path_factory.mktemp("full"), row["configs"], "--model.init_args.init_from",
                  str(pretrained[0]))


def ablation(name, pretrained, tmp):
    row = _row(name)
    pre = row.get("pretrain")
    if pre and pre != _row("channel_oriented")["pretrain"]:  # the row pretrains its own encoder
        pretrained = pretrain_ckpt(tmp, pre)
    extra = ["--model.init_args.init_from", str(pretrained[0])] if pre else []
    return _build(tmp, row["configs"], *extra)


def test_full_model_is_what_the_docs_say(full, pretrained):
    hp = full.hparams
    assert (hp.head, hp.readout, hp.channel_dropout, hp.channel_dropout_mode) == ("temporal", "cls+tokens", 0.2,
                                                                                     "cluster")
    assert hp.init_from_encoder == "teacher" and full.encoder.n_tokens == 125 * 2
    teacher = pretrained[1].teacher_encoder.state_dict()
    own = full.encoder.state_dict()
    assert set(own) - set(teacher) == {"channel_gain.weight"}  # alignment-only: pretraining reads the CLS
    for k, v in teacher.items():  # the teacher's weights, not the student's
        torch.testing.assert_close(own[k], v)
    gain = full.encoder.channel_gain.gain
    assert gain.shape == (125, full.encoder.embed_dim) and gain.std() > 0.5  # signed filters from the start


def test_no_pretraining(full, pretrained, tmp_path):
    m = ablation("no_pretraining", pretrained, tmp_path)
    assert _hp_diff(full, m) == {"init_from"} and m.hparams.init_from is None
    assert _params(m) == _params(full)
    assert not torch.equal(m.encoder.patch_embed.weight, full.encoder.patch_embed.weight)


def test_block_tokens(full, pretrained, tmp_path):
    m = ablation("block_tokens", pretrained, tmp_path)
    # the head, readout, dropout, optimiser: all the same; the encoder comes from its own pretraining run ...
    assert _hp_diff(full, m) == {"init_from"} and m.hparams.init_from
    (tmp_path / "again").mkdir()
    pre_blk = pretrain_ckpt(tmp_path / "again", _row("block_tokens")["pretrain"])[1]
    assert _hp_diff(pretrained[1], pre_blk) == set()  # ... with the same pretraining settings
    assert type(m.encoder).__name__ == "BlockTokenEncoder" and m.encoder.grouping == "neighbourhood"
    assert (m.encoder.patch_size, m.encoder.n_tokens) == (full.encoder.patch_size, full.encoder.n_tokens)
    assert m.head.readout == full.head.readout
    a, b = _params(full), _params(m)
    assert set(a) == set(b)  # the same tensors by name ...
    differ = {n for n in a if a[n] != b[n]}
    assert differ == {"encoder.patch_embed.weight"}  # ... one of which reads 8 electrodes instead of 1
    D, F = full.encoder.embed_dim, full.encoder.patch_embed.in_features
    assert b["encoder.patch_embed.weight"][0] == (D, 8 * F) and a["encoder.patch_embed.weight"][0] == (D, F)
    x, mask = torch.randn(2, 125, 250), torch.ones(2, 125, dtype=torch.bool)
    mask[0, :30] = False
    out_full, out_blk = full.encoder(x, mask), m.encoder(x, mask)
    assert torch.equal(out_full.token_mask, out_blk.token_mask)  # the same tokens present under dropout


def test_no_channel_dropout(full, pretrained, tmp_path):
    m = ablation("no_channel_dropout", pretrained, tmp_path)
    assert _hp_diff(full, m) == {"channel_dropout"} and m.channel_dropout.rate == 0.0
    assert _params(m) == _params(full)


def test_encoder_fixed(full, pretrained, tmp_path):
    m = ablation("encoder_fixed", pretrained, tmp_path)
    assert _hp_diff(full, m) == {"freeze_encoder", "train_channel_gain"}
    a, b = _params(full), _params(m)
    assert {n for n in a if a[n] != b[n]} == {n for n in a if n.startswith("encoder.")}
    # "encoder fixed" means it: nothing of the encoder trains, its channel gain included; only the head learns
    assert [n for n, p in m.encoder.named_parameters() if p.requires_grad] == []
    assert all(p.requires_grad for p in m.head.parameters())


@pytest.mark.parametrize("name,frozen", [("linear_head_finetuned", False), ("linear_head_frozen", True)])
def test_linear_heads_keep_the_readout_source(full, pretrained, tmp_path, name, frozen):
    m = ablation(name, pretrained, tmp_path)
    assert _hp_diff(full, m) == ({"head", "freeze_encoder", "train_channel_gain"} if frozen else {"head"})
    assert m.head.readout == full.head.readout == "cls+tokens"
    assert type(m.head).__name__ == "LinearHead"
    assert [n for n, _ in m.head.named_parameters()] == ["proj.weight", "proj.bias"]
    enc_a = {n: v for n, v in _params(full).items() if n.startswith("encoder.")}
    enc_b = {n: v for n, v in _params(m).items() if n.startswith("encoder.")}
    assert {n: s for n, (s, _) in enc_a.items()} == {n: s for n, (s, _) in enc_b.items()}
    # the linear probe trains one linear map only: the encoder's channel gain is frozen with it
    assert all(rg is not frozen for n, (_, rg) in enc_b.items())
    if frozen:
        trained = {n for n, p in m.named_parameters() if p.requires_grad}  # the map (+ the loss's temperature)
        assert trained == {"aligned.head.proj.weight", "aligned.head.proj.bias", "aligned.logit_scale"}


def test_freezing_without_weights_is_an_error(tmp_path, capsys):
    from chanmusic.cli import main

    for name in ("encoder_fixed", "linear_head_frozen"):
        args = ["fit"]
        for c in ["demo.yaml", *_row(name)["configs"]]:
            args += ["--config", str(EXP / c)]
        # (the CLI's error formatting turns the model's ValueError into one line; here either form counts)
        with pytest.raises((ValueError, SystemExit)) as e:
            main(args + ["--data.root", str(tmp_path)])
        text = str(e.value) + capsys.readouterr().err
        assert "model.freeze_encoder: true with no weights to freeze" in text and "init_from CKPT" in text

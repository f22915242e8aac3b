"""Baseline encoders: LaBraM / EEGPT / CBraMod adapters (official checkpoints, parity with braindecode,
shapes, masks, resampling, units) and EEG2Mel (shapes, training stage). CPU, tiny sizes."""
from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from encoders._foundation import Resampler
from encoders.cbramod import CBraModEncoder
from encoders.eeg2mel import EEG2Mel
from encoders.eegpt import EEGPTEncoder
from encoders.labram import LaBraMEncoder
from chanmusic.core.checkpoints import CheckpointError
from tooling.tiny_foundation import C, N_TIMES, NAMES, SFREQ, TINY, build  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _randomise(module: nn.Module, seed: int) -> None:
    """Random values everywhere (so a mis-mapped tensor cannot agree by initialisation)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05 + (1.0 if p.dim() == 1 else 0.0))


# ---- official-format checkpoints, built independently of our mapping -------------------------------
def _quiet():
    w = warnings.catch_warnings()
    w.__enter__()
    warnings.simplefilter("ignore")
    return w


def reference_labram(enc: LaBraMEncoder):
    from braindecode.models import Labram

    w = _quiet()
    ref = Labram(n_times=enc.model_times, n_outputs=0, n_chans=enc.n_model_channels, sfreq=200, patch_size=200,
                 embed_dim=100, conv_out_channels=4, num_layers=1, num_heads=4, qkv_bias=False,
                 qk_norm=nn.LayerNorm, init_values=0.1, use_mean_pooling=False)
    w.__exit__(None, None, None)
    _randomise(ref, 1)
    sd = {}
    for k, v in ref.state_dict().items():  # braindecode -> official names (modeling_pretrain.py)
        if k == "position_embedding":
            k = "pos_embed"
        elif k == "temporal_embedding":  # official table has 16 rows; rows beyond P+1 are never used
            k, v = "time_embed", torch.cat([v, torch.randn(1, 16 - v.shape[1], v.shape[2])], 1)
        elif k.startswith("patch_embed.temporal_conv."):
            k = "patch_embed." + k[len("patch_embed.temporal_conv."):]
        k = k.replace(".mlp.0.", ".mlp.fc1.").replace(".mlp.2.", ".mlp.fc2.")
        sd["student." + k] = v
    d, vocab = 100, 16
    sd.update({"student.mask_token": torch.randn(1, 1, d), "student.lm_head.weight": torch.randn(vocab, d),
               "student.lm_head.bias": torch.randn(vocab), "lm_head.weight": torch.randn(vocab, d),
               "lm_head.bias": torch.randn(vocab), "projection_head.0.weight": torch.randn(d, d),
               "projection_head.0.bias": torch.randn(d)})
    ckpt = {"model": sd, "epoch": 49, "optimizer": {"state": {}, "param_groups": [{"lr": 5e-4, "params": [0, 1]}]},
            "args": argparse.Namespace(model="labram_base_patch200_1600_8k_vocab", lr=5e-4)}  # utils.save_model

    ref.eval()

    def run(x):
        return ref(x, return_features=True, ch_names=enc.model_ch_names)["features"]
    return ckpt, "model", "student.blocks.0.attn.qkv.weight", 7, run


def reference_eegpt(enc: EEGPTEncoder):
    from braindecode.models import EEGPT

    w = _quiet()
    ref = EEGPT(n_outputs=1, n_chans=enc.n_model_channels, chs_info=[{"ch_name": n} for n in enc.model_ch_names],
                n_times=enc.model_times, sfreq=256, patch_size=64, patch_stride=None, embed_num=2, embed_dim=32,
                depth=1, num_heads=4, return_encoder_output=True, chan_proj_type="none")
    w.__exit__(None, None, None)
    _randomise(ref, 2)
    target = ref.target_encoder.state_dict()
    target["chan_embed.weight"] = target["chan_embed.weight"][:62]  # official table: 62 names (ids used are < 62)
    sd = {"target_encoder." + k: v for k, v in target.items()}
    extra = {"encoder." + k: v + 0.1 for k, v in target.items()}  # LitEEGPT's online encoder, predictor, reconstructor
    extra.update({"predictor.mask_token": torch.randn(1, 1, 32), "predictor.predictor_embed.weight": torch.randn(32, 32),
                  "reconstructor.reconstructor_embed.weight": torch.randn(32, 32), "reconstructor.time_embed": torch.randn(1, 16, 32)})
    sd.update(extra)
    ckpt = {"state_dict": sd, "epoch": 9, "global_step": 1000, "pytorch-lightning_version": "2.1.0"}

    ref.eval()

    def run(x):
        return ref(x, return_features=True)["features"]
    return ckpt, "state_dict", "target_encoder.blocks.0.mlp.fc1.weight", len(extra), run


def reference_cbramod(enc: CBraModEncoder):
    from braindecode.models import CBraMod

    w = _quiet()
    ref = CBraMod(n_outputs=1, n_chans=enc.n_model_channels, n_times=enc.model_times, sfreq=200, n_layer=1, nhead=4,
                  dim_feedforward=64, return_encoder_output=True)
    w.__exit__(None, None, None)
    _randomise(ref, 3)
    sd = dict(ref.state_dict())  # official names are braindecode's, proj_out included
    ref.proj_out = nn.Identity()  # as the official fine-tuning code

    ref.eval()

    def run(x):
        return ref(x, return_features=True)["features"].flatten(1, 2)
    return sd, None, "encoder.layers.0.linear1.weight", 2, run


REFERENCES = {"labram": reference_labram, "eegpt": reference_eegpt, "cbramod": reference_cbramod}


def _write(ckpt, key, path, rename=None):
    if rename is not None:
        sd = dict(ckpt[key] if key else ckpt)
        old, new = rename
        sd[new] = sd.pop(old)
        ckpt = {**ckpt, key: sd} if key else sd
    torch.save(ckpt, path)
    return str(path)


@pytest.mark.parametrize("name", ["labram", "eegpt", "cbramod"])
def test_official_checkpoint_loads_every_key_and_matches_braindecode(name, tmp_path):
    torch.manual_seed(0)
    enc = build(name)
    ckpt, key, _, n_ignored, run = REFERENCES[name](enc)
    path = _write(ckpt, key, tmp_path / "official.pth")
    loaded = build(name, init_from=path).eval()
    sd = ckpt[key] if key else ckpt
    # every official key is either loaded or one of the documented pretraining-only keys
    assert len(loaded.model.state_dict() if name != "eegpt" else loaded.model.target_encoder.state_dict()) \
        == len(sd) - n_ignored
    eeg = torch.randn(2, C, N_TIMES)
    with torch.no_grad():
        x, _ = loaded.prepare(eeg)
        ours = loaded(eeg).tokens
        theirs = run(x)
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


@pytest.mark.parametrize("name", ["labram", "eegpt", "cbramod"])
def test_renamed_official_key_fails_naming_it(name, tmp_path):
    enc = build(name)
    ckpt, key, victim, _, _ = REFERENCES[name](enc)
    path = _write(ckpt, key, tmp_path / "renamed.pth", rename=(victim, victim + "_renamed"))
    with pytest.raises(CheckpointError) as err:
        build(name, init_from=path)
    assert victim + "_renamed" in str(err.value)
    assert "missing" in str(err.value) and "unexpected" in str(err.value)


class _Arbitrary:
    """Not a tensor or container: weights_only loading must refuse it."""


@pytest.mark.parametrize("name", ["labram", "cbramod"])
def test_arbitrary_pickle_is_refused(name, tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _Arbitrary()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        build(name, init_from=str(path))
    with pytest.raises(CheckpointError, match="not found"):
        build(name, init_from=str(tmp_path / "absent.pth"))


def test_labram_window_longer_than_official_time_table_is_refused(tmp_path):
    enc = build("labram")
    ckpt, key, _, _, _ = REFERENCES["labram"](enc)
    ckpt["model"]["student.time_embed"] = ckpt["model"]["student.time_embed"][:, :2]
    path = _write(ckpt, key, tmp_path / "short.pth")
    with pytest.raises(CheckpointError, match="time_embed"):
        build("labram", init_from=path)


# ---- shapes, masks, rates, units -----------------------------------------------------------------
@pytest.mark.parametrize("name,rate,n_patches,per_channel", [("labram", 200, 2, True), ("eegpt", 256, 8, False),
                                                             ("cbramod", 200, 2, True)])
def test_output_shapes_and_rates(name, rate, n_patches, per_channel):
    enc = build(name).eval()
    assert enc.model_sfreq == rate and enc.n_resampled == N_TIMES * rate / SFREQ and enc.n_patches == n_patches
    with torch.no_grad():
        out = enc(torch.randn(3, C, N_TIMES))
    n = enc.n_model_channels * n_patches if per_channel else n_patches
    assert out.pooled.shape == (3, enc.embed_dim) and out.tokens.shape == (3, n, enc.embed_dim)
    assert out.token_time.shape == (n,) and enc.n_tokens == n
    assert out.token_time.max() == n_patches - 1 and torch.isfinite(out.tokens).all()
    if per_channel:  # channel-major grid
        assert out.token_time[:n_patches].tolist() == list(range(n_patches))


@pytest.mark.parametrize("name", ["labram", "eegpt", "cbramod"])
def test_masked_channels_do_not_reach_the_output(name):
    enc = build(name).eval()
    g = torch.Generator().manual_seed(0)
    eeg = torch.randn(2, C, N_TIMES, generator=g)
    mask = torch.rand(2, C, generator=g) > 0.3
    other = torch.where(mask.unsqueeze(-1), eeg, 100 * torch.randn(2, C, N_TIMES, generator=g))
    with torch.no_grad():
        a, b, full = enc(eeg, mask), enc(other, mask), enc(eeg)
    assert torch.allclose(a.pooled, b.pooled, atol=1e-6) and torch.allclose(a.tokens, b.tokens, atol=1e-6)
    assert not torch.allclose(a.pooled, full.pooled, atol=1e-4)  # the mask does change the input
    if a.token_mask is not None:  # tokens of absent channels are marked, per sample
        present = mask[:, enc.channel_index]
        assert torch.equal(a.token_mask, present.repeat_interleave(enc.n_patches, 1))


def test_resampler_is_band_limited_and_keeps_dc():
    t_in = np.arange(N_TIMES) / SFREQ
    x = torch.tensor(np.sin(2 * np.pi * 7.0 * t_in) + 0.5)[None, None]
    for rate in (200.0, 256.0):
        r = Resampler(SFREQ, rate)
        y = r(x)[0, 0].numpy()
        assert len(y) == round(N_TIMES * rate / SFREQ)
        t_out = np.arange(len(y)) / rate
        inner = (t_out > 0.2) & (t_out < t_in[-1] - 0.2)
        assert np.abs(y[inner] - (np.sin(2 * np.pi * 7.0 * t_out[inner]) + 0.5)).max() < 1e-2
    ones = torch.ones(1, 1, N_TIMES)
    assert torch.allclose(Resampler(SFREQ, 200.0)(ones), torch.ones(1, 1, 400), atol=1e-12)
    up = Resampler(SFREQ, 250.0)(x)  # coinciding instants are reproduced exactly
    assert torch.allclose(up[..., ::2], x, atol=1e-12)


def test_units_and_patch_fit():
    dc = torch.full((1, C, N_TIMES), 50.0)
    lab = build("labram", input_units="uV")
    assert torch.allclose(lab.prepare(dc)[0], torch.full((1, lab.n_model_channels, 400), 0.5), atol=1e-5)
    gpt = build("eegpt", input_units="uV", average_reference=False)
    assert torch.allclose(gpt.prepare(dc)[0], torch.full((1, gpt.n_model_channels, 512), 0.05), atol=1e-6)
    z = build("cbramod", input_units="zscore", zscore_uv=20.0)
    assert torch.allclose(z.prepare(torch.ones(1, C, N_TIMES))[0], torch.full((1, z.n_model_channels, 400), 0.2))
    ref = build("eegpt")  # average reference: the channel mean of every sample is zero
    assert ref.prepare(torch.randn(2, C, N_TIMES))[0].mean(1).abs().max() < 1e-6
    # a 2.4-s window: 480 samples at 200 Hz, zero-padded to 3 patches or cropped to 2
    pad = LaBraMEncoder(C, SFREQ, 300, NAMES, **TINY["labram"][1])
    crop = LaBraMEncoder(C, SFREQ, 300, NAMES, patch_fit="crop", **TINY["labram"][1])
    assert (pad.model_times, crop.model_times) == (600, 400)
    xp = pad.prepare(torch.ones(1, C, 300))[0]
    assert xp[..., 480:].abs().max() == 0 and pad(torch.randn(1, C, 300)).tokens.shape[1] == 3 * pad.n_model_channels
    with pytest.raises(ValueError, match="input_units"):
        build("labram", input_units="furlongs")


def test_channel_sets():
    near = build("labram", channel_set="nearest")
    assert near.n_model_channels == len(set(near.model_ch_names)) < C
    assert len(build("eegpt", channel_set="nearest").model_ch_names) == 58
    cb = build("cbramod", channel_set="nearest")
    assert cb.n_model_channels == 19 and NAMES[int(cb.channel_index[17])] == "Cz"  # TUEG order: ..., FZ, CZ, PZ
    far = build("eegpt", max_angle=10.0)
    assert 0 < far.n_model_channels < C


# ---- EEG2Mel -------------------------------------------------------------------------------------
def test_eeg2mel_shapes_and_mask():
    m = EEG2Mel(C, SFREQ, N_TIMES, NAMES, base_filters=2).eval()
    eeg = torch.randn(3, C, N_TIMES)
    with torch.no_grad():
        out, mel = m.forward_all(eeg)
        assert out.pooled.shape == (3, 128) and out.tokens.shape == (3, 1, 128) and m.embed_dim == 128
        assert mel.shape == (3, 64, 201) and m.predict_mel(eeg).shape == (3, 64, 201)
        assert m.image(eeg).shape == (3, 1, 63, C)  # the paper's 63-bin x 125-channel PSD image
        mask = torch.ones(3, C, dtype=torch.bool)
        mask[:, :10] = False
        other = eeg.clone()
        other[:, :10] = torch.randn(3, 10, N_TIMES)
        assert torch.allclose(m(eeg, mask).pooled, m(other, mask).pooled)
    raw = EEG2Mel(C, SFREQ, N_TIMES, NAMES, features="raw", base_filters=2, n_mels=8, n_frames=5)
    assert raw.image(eeg).shape == (3, 1, N_TIMES, C) and raw.predict_mel(eeg).shape == (3, 8, 5)


def _mel_batches(n=24, seed=0, c=C, t=N_TIMES):
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        items.append({"eeg": torch.randn(c, t, generator=g), "clap": torch.randn(512, generator=g),
                      "mel": torch.randn(16, 9, generator=g) * 3 + 5, "song": i % 4, "genre": i % 3,
                      "subject": 0, "segment": i, "music": i, "stimulus": i % 4, "start": 250 * (i // 4),
                      "length": 250, "channel_mask": torch.ones(c, dtype=torch.bool)})
    return items


def test_eeg2mel_training_reduces_mel_loss():
    from chanmusic.stages.eeg2mel import EEG2MelModule

    torch.manual_seed(0)
    enc = EEG2Mel(16, SFREQ, 125, base_filters=2, n_mels=16, n_frames=9)  # small input: the loss is the point
    module = EEG2MelModule(enc, clip_weight=0.0)
    batch = torch.utils.data.default_collate(_mel_batches(8, c=16, t=125))
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        loss, _ = module._step(batch, train=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert bool(module.mel_stats_ready)
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3]), losses
    with pytest.raises(ValueError, match="n_frames"):
        module._step({**batch, "mel": torch.zeros(8, 16, 10)}, train=True)


def test_eeg2mel_stage_fits_and_writes_metrics(tmp_path):
    import lightning as L

    from chanmusic.stages.eeg2mel import EEG2MelModule

    torch.manual_seed(0)
    items = _mel_batches(24)
    loader = torch.utils.data.DataLoader(items, batch_size=8)
    module = EEG2MelModule(EEG2Mel(C, SFREQ, N_TIMES, NAMES, base_filters=2, n_mels=16, n_frames=9), id_repeats=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = L.Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                            accelerator="cpu")
        trainer.fit(module, loader)
        trainer.test(module, loader, verbose=False)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for name in ("id50", "song_id", "mel_mse", "mel_id50"):
        assert {"mean", "n", "chance", "ci95"} <= set(metrics[name]), name
    assert metrics["mel_mse"]["n"] == 24

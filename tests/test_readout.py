"""Readout: no head ever reads a removed channel (as zeros or otherwise); scalp maps of the readout used;
native-rate crops keep frequencies; teacher/student encoder init; structured dropout by default."""
import importlib
import math
from pathlib import Path

import pytest
import torch
import yaml

from chanmusic.modules.heads import HEADS, build_head, readout_channel_map
from chanmusic.modules.views import MultiCropEEG, crop_length, temporal_crop
from encoders.base import EncoderOutput
from encoders.block_tokens import BlockTokenEncoder
from encoders.channel_oriented import ChannelOrientedEncoder
from chanmusic.core.electrodes import default_ch_names
from encoders.token_transformer import BandPower

ROOT = Path(__file__).resolve().parents[1]
C, SFREQ, T, PATCH = 12, 100.0, 100, 25


def tiny(depth=2):
    torch.manual_seed(0)
    return ChannelOrientedEncoder(C, SFREQ, T, embed_dim=16, depth=depth, num_heads=2, patch_size=PATCH).eval()


def full_model():
    """The full model exactly as experiments/encoders/channel_oriented.yaml builds it (125 ch, 2-s windows)."""
    from chanmusic.stages.align import AlignModule

    cfg = yaml.safe_load((ROOT / "experiments/encoders/channel_oriented.yaml").read_text())["model"]["init_args"]
    spec = cfg.pop("encoder")
    mod, cls = spec["class_path"].rsplit(".", 1)
    torch.manual_seed(0)
    enc = getattr(importlib.import_module(mod), cls)(125, 125.0, 250, default_ch_names(125), **spec["init_args"])
    cfg.pop("init_from_encoder", None)
    return AlignModule(enc, clap_dim=32, **cfg).eval()


def test_full_model_alignment_equals_physically_removed_channels():
    """Fails for a fixed-grid head that re-adds removed channels as zeros (the old ``tokens`` head)."""
    model = full_model()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 125, 250, generator=g)
    mask = model.channel_dropout.train()(torch.ones(3, 125, dtype=torch.bool))  # the training-time dropout
    assert bool((~mask).any()) and model.channel_dropout.mode == "cluster"
    masked = model(x, mask)
    for b in range(3):
        keep = mask[b].nonzero().squeeze(1)
        alone = model.head(model.encoder(x[b:b + 1, keep], channel_index=keep))
        torch.testing.assert_close(masked[b:b + 1], alone, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", HEADS)
@pytest.mark.parametrize("readout", ["tokens", "cls+tokens"])
def test_every_head_ignores_absent_tokens(kind, readout):
    enc = tiny()
    torch.manual_seed(1)
    head = build_head(kind, 16, 8, 32, readout).eval()
    x = torch.randn(2, C, T)
    mask = torch.ones(2, C, dtype=torch.bool)
    mask[0, [1, 5, 6]] = False
    mask[1, [0, 11]] = False
    out = enc(x, mask)
    y = head(out)
    # whatever stands at an absent token (0, 1e6, NaN) never reaches the output
    for fill in (1e6, float("nan")):
        tokens = out.tokens.clone()
        tokens[~out.token_mask] = fill
        poisoned = EncoderOutput(out.pooled, tokens, out.token_time, out.channel_attention, out.token_mask)
        torch.testing.assert_close(head(poisoned), y)
    for b in range(2):  # and equals the head on the channels physically absent
        keep = mask[b].nonzero().squeeze(1)
        torch.testing.assert_close(head(enc(x[b:b + 1, keep], channel_index=keep)), y[b:b + 1], atol=2e-5, rtol=1e-4)


def test_heads_read_their_source():
    enc = tiny()
    out = enc(torch.randn(2, C, T))
    lin = build_head("linear", 16, 4)
    assert lin.readout == "pooled"
    torch.testing.assert_close(lin(out), lin.proj(out.pooled))
    lin_tok = build_head("linear", 16, 4, readout="cls+tokens")
    lin_tok.load_state_dict(lin.state_dict())
    mean = torch.cat([out.pooled[:, None], out.tokens], 1).mean(1)
    torch.testing.assert_close(lin_tok(out), lin.proj(mean))
    assert build_head("temporal", 16, 4).readout == "cls+tokens"
    with pytest.raises(ValueError, match="model.head: 'tokens'"):
        build_head("tokens", 16, 4)
    with pytest.raises(ValueError, match="model.readout"):
        build_head("mlp", 16, 4, readout="grid")


# ---------------------------------------------------------------------------------------------- scalp maps
def test_rollout_matches_a_hand_computation_for_one_block():
    enc = tiny(depth=1)
    x = torch.randn(2, C, T)
    mask = torch.ones(2, C, dtype=torch.bool)
    mask[1, :4] = False
    P = T // PATCH
    tok = enc.patch_embed(enc.patch_features(torch.where(mask[..., None], x, 0.0)))
    tok = (tok + enc.channel_embed.weight[None, :, None] + enc.time_embed[:P]).flatten(1, 2)
    present = mask.repeat_interleave(P, 1)
    tr = enc.transformer
    xx = torch.cat([tr.cls_token.expand(2, -1, -1), tok], 1)
    keep = torch.cat([torch.ones(2, 1, dtype=torch.bool), present], 1)
    A = tr.blocks[0].attn.weights(tr.blocks[0].norm1(xx), keep)
    A = 0.5 * A + 0.5 * torch.eye(A.shape[-1])
    A = A / A.sum(-1, keepdim=True)
    q = present.float() / present.float().sum(1, keepdim=True)  # the mean over present tokens (no CLS)
    w = (q[:, None, :] @ A[:, 1:, 1:]).squeeze(1) * present
    want = (w / w.sum(1, keepdim=True)).view(2, C, P).sum(-1)
    got = enc.rollout_channel_map(x, mask)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert torch.all(got[1, :4] == 0) and torch.allclose(got.sum(1), torch.ones(2))


def test_scalp_map_comes_from_the_readout_used():
    enc = tiny()
    x = torch.randn(3, C, T)
    mask = torch.ones(3, C, dtype=torch.bool)
    mask[0, 2] = False
    out = enc(x, mask)
    m, kind = readout_channel_map(build_head("linear", 16, 4), enc, out, x, mask)
    assert kind == "CLS attention" and torch.equal(m, out.channel_attention)
    m, kind = readout_channel_map(build_head("temporal", 16, 4), enc, out, x, mask)
    assert kind == "attention rollout"
    torch.testing.assert_close(m, enc.rollout_channel_map(x, mask, include_cls=True))
    head = build_head("attention", 16, 4, n_queries=3)
    m, kind = readout_channel_map(head, enc, out, x, mask)
    assert kind == "readout attention"
    torch.testing.assert_close(m, head.weights(out).mean(1).view(3, C, -1).sum(-1))
    for m, _ in [readout_channel_map(build_head(k, 16, 4), enc, out, x, mask) for k in HEADS]:
        assert m[0, 2] == 0 and torch.allclose(m.sum(1), torch.ones(3), atol=1e-5)
    # block tokens: the same maps, a block's share going to its centre electrode
    torch.manual_seed(0)
    blk = BlockTokenEncoder(125, 125.0, 250, embed_dim=16, depth=1, num_heads=2, group_size=4).eval()
    xb, mb = torch.randn(2, 125, 250), torch.ones(2, 125, dtype=torch.bool)
    mb[0, 7] = False
    r = blk.rollout_channel_map(xb, mb)
    assert r.shape == (2, 125) and r[0, 7] == 0 and torch.allclose(r.sum(1), torch.ones(2), atol=1e-5)


# ---------------------------------------------------------------------------------------------- crops
def test_native_crops_keep_frequencies_and_whole_patches():
    sf, n = 125.0, 250
    t = torch.arange(n) / sf
    x = torch.sin(2 * math.pi * 10.0 * t).expand(4, 3, n).contiguous()  # 10 Hz alpha
    g = torch.Generator().manual_seed(0)
    views = MultiCropEEG(2, 4, (0.5, 1.0), (0.2, 0.5), global_noise=0.0, local_noise=0.0, quantum=125)(x, g)
    for v in views.global_views + views.local_views:
        assert v.shape[-1] % 125 == 0 and 125 <= v.shape[-1] <= n
    assert all(v.shape[-1] == 125 for v in views.local_views)  # 0.2-0.5 of 2 s -> one 1-s patch
    bp = BandPower(125, sf)
    alpha = 2  # 8-13 Hz
    for v in views.local_views:
        assert int(bp(v[..., :125]).argmax(-1).unique()) == alpha  # still alpha in the crop
    stretched = temporal_crop(x, (0.5, 0.5), n, g, resize=True)  # 1 s resized to 2 s: 10 Hz -> 5 Hz
    assert int(bp(stretched[..., :125]).argmax(-1).unique()) == 1  # theta (4-8 Hz)
    assert crop_length(250, 0.3, 125) == 125 and crop_length(250, 0.9, 125) == 250 and crop_length(250, 0.01, 125) == 125


def test_pretraining_runs_views_of_different_lengths():
    from chanmusic.stages.pretrain import PretrainModule

    torch.manual_seed(0)
    enc = ChannelOrientedEncoder(8, 64.0, 64, embed_dim=16, depth=1, num_heads=2, patch_size=16)
    m = PretrainModule(enc, out_dim=32, head_hidden_dim=32, bottleneck_dim=8, n_local=3, global_scale=(0.4, 1.0),
                       local_scale=(0.2, 0.5), channel_dropout_mode="random")
    lens = set()
    for seed in range(6):
        views = m.crops(torch.randn(4, 8, 64), torch.Generator().manual_seed(seed))
        lens |= {v.shape[-1] for v in views.global_views + views.local_views}
    assert len(lens) > 1 and all(n % 16 == 0 for n in lens)
    loss, stats, t_out = m._distill({"eeg": torch.randn(4, 8, 64)}, torch.Generator().manual_seed(0))
    assert t_out.shape == (2, 4, 32) and torch.isfinite(loss)
    assert m.channel_dropout.mode == "random" and PretrainModule(enc).channel_dropout.mode == "cluster"


def test_channel_gain_weights_electrodes_and_keeps_removal_exact():
    torch.manual_seed(0)
    plain = ChannelOrientedEncoder(C, SFREQ, T, embed_dim=16, depth=1, num_heads=2, patch_size=PATCH).eval()
    torch.manual_seed(0)
    gained = ChannelOrientedEncoder(C, SFREQ, T, embed_dim=16, depth=1, num_heads=2, patch_size=PATCH,
                                    channel_gain=True, channel_gain_std=0.0).eval()
    x = torch.randn(2, C, T)
    torch.testing.assert_close(gained(x).tokens, plain(x).tokens)  # std 0: gains start at one, the same model
    with torch.no_grad():
        gained.channel_gain.weight.copy_(torch.randn(C, 16))
    out = gained(x)
    assert torch.equal(gained.channel_gain.gain, gained.channel_gain.weight * 10.0)  # stored / lr_scale (default 10)
    want = plain(x).tokens.view(2, C, -1, 16) * gained.channel_gain.gain[None, :, None, :]
    torch.testing.assert_close(out.tokens, want.flatten(1, 2))
    mask = torch.ones(2, C, dtype=torch.bool)
    mask[0, [3, 4]] = False
    keep = mask[0].nonzero().squeeze(1)
    torch.testing.assert_close(gained(x, mask).tokens.view(2, C, -1, 16)[0, keep],
                               gained(x[:1, keep], channel_index=keep).tokens.view(1, len(keep), -1, 16)[0])
    with pytest.raises(ValueError, match="channel_gain"):
        ChannelOrientedEncoder(C, SFREQ, T, embed_dim=16, depth=1, num_heads=2, patch_size=PATCH,
                               channel_gain=True, channel_embedding="position", positions=torch.randn(C, 3).tolist())

"""Channel-oriented and block-token encoders, electrode montage helpers, cluster channel dropout."""
import importlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from chanmusic.modules.channel_dropout import ChannelDropout, drop_clusters
from encoders.block_tokens import BlockTokenEncoder
from encoders.channel_oriented import ChannelOrientedEncoder
from chanmusic.core.electrodes import default_ch_names, distance_matrix, electrode_positions, neighbour_groups, resolve_positions
from encoders.token_transformer import BandPower

ROOT = Path(__file__).resolve().parents[1]
C, SFREQ, T, PATCH = 12, 100.0, 100, 25  # 12 channels × 4 patches = 48 tokens


def tiny(**kw):
    torch.manual_seed(0)
    args = dict(embed_dim=16, depth=2, num_heads=2, patch_size=PATCH)
    args.update(kw)
    return ChannelOrientedEncoder(C, SFREQ, T, **args).eval()


def test_shapes_token_time_and_attention():
    enc = tiny()
    x = torch.randn(3, C, T)
    out = enc(x)
    P = T // PATCH
    assert enc.n_tokens == C * P
    assert out.pooled.shape == (3, 16) and out.tokens.shape == (3, C * P, 16)
    assert torch.equal(out.token_time, torch.arange(P).repeat(C))  # channel-major grid
    assert out.token_mask.shape == (3, C * P) and bool(out.token_mask.all())
    assert out.channel_attention.shape == (3, C)
    assert torch.all(out.channel_attention >= 0)
    assert torch.allclose(out.channel_attention.sum(1), torch.ones(3), atol=1e-5)


def test_masked_channel_equals_physically_absent():
    enc = tiny()
    x = torch.randn(4, C, T)
    absent = [2, 7, 8]
    keep = torch.tensor([c for c in range(C) if c not in absent])
    mask = torch.ones(4, C, dtype=torch.bool)
    mask[:, absent] = False
    masked = enc(x, mask)
    sliced = enc(x[:, keep], None, channel_index=keep)
    P = T // PATCH
    grid = masked.tokens.view(4, C, P, -1)
    torch.testing.assert_close(masked.pooled, sliced.pooled, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grid[:, keep], sliced.tokens.view(4, len(keep), P, -1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masked.channel_attention[:, keep], sliced.channel_attention, atol=1e-6, rtol=1e-5)
    assert torch.all(grid[:, absent] == 0)  # removed tokens are zero on the grid ...
    assert not bool(masked.token_mask.view(4, C, P)[:, absent].any())  # ... and marked absent
    assert torch.all(masked.channel_attention[:, absent] == 0)


def test_per_sample_masks_match_each_sample_alone():
    """Different absent sets in one batch (packing with padding) == each sample run alone without the rows."""
    enc = tiny()
    x = torch.randn(3, C, T)
    mask = torch.ones(3, C, dtype=torch.bool)
    mask[0, [0, 1]] = False
    mask[1, [5]] = False  # sample 2 keeps everything
    out = enc(x, mask)
    for b in range(3):
        keep = mask[b].nonzero().squeeze(1)
        alone = enc(x[b:b + 1, keep], channel_index=keep)
        torch.testing.assert_close(out.pooled[b:b + 1], alone.pooled, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.tokens.view(3, C, -1, 16)[b, keep], alone.tokens.view(len(keep), -1, 16),
                                   atol=1e-5, rtol=1e-5)


def test_masked_values_are_never_read():
    enc = tiny()
    x = torch.randn(2, C, T)
    mask = torch.ones(2, C, dtype=torch.bool)
    mask[0, 3] = False
    mask[1, [4, 9]] = False
    ref = enc(x, mask)
    y = x.clone()
    y[0, 3] = 1e6
    y[1, 4] = float("nan")
    y[1, 9] = torch.randn(T) * 100
    out = enc(y, mask)
    assert torch.equal(out.pooled, ref.pooled) and torch.equal(out.tokens, ref.tokens)
    assert torch.equal(out.channel_attention, ref.channel_attention)


def test_heavy_masking_no_nan_and_gradients_finite():
    enc = tiny().train()
    x = torch.randn(4, C, T, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(4, C, generator=g) > 0.9
    mask[0] = False  # nothing present at all
    mask[1, 0] = True
    out = enc(x, mask)
    for t in (out.pooled, out.tokens, out.channel_attention):
        assert torch.isfinite(t).all()
    assert torch.all(out.channel_attention[0] == 0)
    present = mask[1:].any(1)
    assert torch.allclose(out.channel_attention[1:][present].sum(1), torch.ones(int(present.sum())), atol=1e-5)
    (out.pooled.sum() + out.tokens.sum()).backward()
    assert torch.isfinite(x.grad).all()
    assert torch.all(x.grad[~mask] == 0)  # absent channels get no gradient: they take no part


def test_shorter_inputs_and_limits():
    enc = tiny()
    out = enc(torch.randn(2, C, PATCH * 2))  # a local crop: 2 patches
    assert out.tokens.shape == (2, C * 2, 16) and torch.equal(out.token_time, torch.arange(2).repeat(C))
    with pytest.raises(ValueError):
        enc(torch.randn(2, C, T + PATCH))  # more patches than the time table holds
    with pytest.raises(ValueError):
        enc(torch.randn(2, C + 1, T))  # wrong channel count without channel_index
    longer = tiny(max_time_patches=8)
    assert longer(torch.randn(1, C, 8 * PATCH)).tokens.shape[1] == C * 8
    with pytest.raises(NotImplementedError):
        tiny(channel_embedding="positions")


def test_band_power_sees_the_right_band():
    bp = BandPower(125, 125.0)
    t = torch.arange(125) / 125.0
    for f, band in ((2.0, 0), (10.0, 2), (25.0, 4), (40.0, 5)):
        x = torch.sin(2 * math.pi * f * t) + 0.01 * torch.randn(125)
        assert int(bp(x).argmax()) == band
    assert BandPower(25, 125.0).n_bands == 6  # coarse bins fall back to the nearest bin
    assert BandPower(50, 50.0).n_bands == 5  # 30-45 Hz starts above Nyquist (25 Hz)
    enc_off = tiny(band_power=False)
    assert enc_off.patch_embed.in_features == PATCH


# ---------------------------------------------------------------------------------------------- montage
def test_montage_positions_and_groups():
    names = default_ch_names(125)
    assert names[:2] == ["E1", "E2"] and names[-1] == "Cz" and len(names) == 125
    pos = electrode_positions(names)
    assert pos.shape == (125, 3) and np.isfinite(pos).all()
    assert np.allclose(electrode_positions(["e129"]), electrode_positions(["Cz"]))
    with pytest.raises(ValueError):
        electrode_positions(["E1", "NOT_A_CHANNEL"])
    g1 = neighbour_groups(pos, 16, seed=0)
    g2 = neighbour_groups(pos.copy(), 16, seed=0)
    assert g1 == g2  # deterministic
    flat = sorted(c for g in g1 for c in g)
    assert flat == list(range(125)) and len(g1) == 16 and all(g for g in g1)  # every channel exactly once
    d = distance_matrix(pos)
    within = np.mean([d[np.ix_(g, g)][np.triu_indices(len(g), 1)].mean() for g in g1 if len(g) > 1])
    assert within < 0.5 * d[np.triu_indices(125, 1)].mean()  # groups are spatial neighbourhoods


# ---------------------------------------------------------------------------------------------- block tokens
def test_block_tokens_grid_and_mask_semantics():
    torch.manual_seed(0)
    enc = BlockTokenEncoder(125, 125.0, 250, grouping="partition", n_groups=16, embed_dim=16, depth=1, num_heads=2, patch_size=125).eval()
    again = BlockTokenEncoder(125, 125.0, 250, grouping="partition", n_groups=16, embed_dim=16, depth=1, num_heads=2, patch_size=125)
    assert enc.groups == again.groups
    assert sorted(c for g in enc.groups for c in g) == list(range(125))
    P = 2
    x = torch.randn(2, 125, 250)
    out = enc(x)
    assert out.tokens.shape == (2, 16 * P, 16) and enc.n_tokens == 16 * P
    assert torch.equal(out.token_time, torch.arange(P).repeat(16))
    assert torch.allclose(out.channel_attention.sum(1), torch.ones(2), atol=1e-5)

    mask = torch.ones(2, 125, dtype=torch.bool)
    whole, part = enc.groups[0], enc.groups[1]
    mask[0, whole] = False  # whole group absent -> its tokens removed
    mask[0, part[0]] = False  # one channel of another group -> zero-filled, token kept
    m_out = enc(x, mask)
    tm = m_out.token_mask.view(2, 16, P)
    assert not bool(tm[0, 0].any()) and bool(tm[0, 1:].all()) and bool(tm[1].all())
    assert torch.all(m_out.tokens.view(2, 16, P, -1)[0, 0] == 0)
    assert not torch.allclose(m_out.tokens.view(2, 16, P, -1)[0, 1], out.tokens.view(2, 16, P, -1)[0, 1])
    y = x.clone()
    y[0, whole] = 1e6
    y[0, part[0]] = float("nan")
    torch.testing.assert_close(enc(y, mask).pooled, m_out.pooled)  # absent values are never read
    ca = m_out.channel_attention
    assert torch.all(ca[0, whole] == 0) and ca[0, part[0]] == 0
    assert torch.allclose(ca.sum(1), torch.ones(2), atol=1e-5)


# ---------------------------------------------------------------------------------------------- cluster dropout
def test_cluster_dropout_on_a_line_drops_a_contiguous_run():
    pos = [[float(i), 0.0, 0.0] for i in range(20)]
    cd = ChannelDropout(0.25, "cluster", positions=pos).train()
    mask = torch.ones(200, 20, dtype=torch.bool)
    out = cd(mask)
    dropped = ~out
    assert torch.all(dropped.sum(1) == 5)
    for row in dropped:
        idx = row.nonzero().squeeze(1)
        assert int(idx.max() - idx.min()) == 4  # five neighbours in a row
    assert torch.equal(cd.eval()(mask), mask)  # eval mode: identity


def test_cluster_dropout_on_the_net_is_spatially_contiguous_at_the_rate():
    torch.manual_seed(0)
    cd = ChannelDropout(0.2, "cluster").train()  # positions from the default 125 NMED names
    rnd = ChannelDropout(0.2, "random").train()
    mask = torch.ones(64, 125, dtype=torch.bool)
    mask[:, 0] = False  # one already absent: drops come from present channels
    out, out_r = cd(mask), rnd(mask)
    assert torch.all((~out).sum(1) == 1 + 25) and torch.all((~out_r).sum(1) == 1 + 25)
    d = torch.from_numpy(distance_matrix(resolve_positions(125))).float()
    knn = d.argsort(1)[:, 1:7]  # 6 nearest neighbours

    def mean_pairwise(rows):
        return float(np.mean([d[r][:, r].sum() / (len(r) * (len(r) - 1)) for r in rows]))

    new_c = [((~out[b]) & mask[b]).nonzero().squeeze(1) for b in range(64)]
    new_r = [((~out_r[b]) & mask[b]).nonzero().squeeze(1) for b in range(64)]
    assert mean_pairwise(new_c) < 0.6 * mean_pairwise(new_r)
    for r in new_c[:16]:  # connected under the 6-nearest-neighbour graph
        members, seen, todo = set(r.tolist()), {int(r[0])}, [int(r[0])]
        while todo:
            c = todo.pop()
            for n in knn[c].tolist() + (d[c] <= d[c][knn[c]].max()).nonzero().squeeze(1).tolist():
                if n in members and n not in seen:
                    seen.add(n)
                    todo.append(n)
        assert seen == members
    # functional form with two clusters keeps the count
    two = drop_clusters(mask, 0.2, d, n_clusters=2)
    assert torch.all((~two).sum(1) == 26)


# ---------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name", ["channel_oriented", "block_tokens"])
def test_encoder_yaml_builds_and_feeds_its_head(name):
    from chanmusic.stages.align import AlignModule

    cfg = yaml.safe_load((ROOT / "experiments" / "encoders" / f"{name}.yaml").read_text())["model"]["init_args"]
    spec = cfg.pop("encoder")
    mod, cls = spec["class_path"].rsplit(".", 1)
    enc = getattr(importlib.import_module(mod), cls)(125, 125.0, 250, default_ch_names(125), **spec["init_args"])
    model = AlignModule(enc, clap_dim=32, **cfg)
    assert model.hparams.head == "temporal" and model.hparams.readout == "cls+tokens"
    assert model.hparams.channel_dropout > 0 and model.channel_dropout.mode == "cluster"
    batch_mask = model.channel_dropout.train()(torch.ones(2, 125, dtype=torch.bool))
    assert model(torch.randn(2, 125, 250), batch_mask).shape == (2, 32)


def test_ablation_yamls_are_overrides():
    abl = ROOT / "experiments" / "ablations"
    names = {p.stem for p in abl.glob("*.yaml")}
    assert {"block_tokens", "no_pretraining", "no_channel_dropout", "linear_head_frozen", "linear_head_finetuned",
            "encoder_fixed"} <= names
    for p in abl.glob("*.yaml"):
        cfg = yaml.safe_load(p.read_text())
        assert set(cfg) == {"model"} and "class_path" not in cfg["model"], p.name

"""Position-based channel identity: the channel-oriented encoder on subsets, other orders and other montages."""
import copy
from pathlib import Path

import pytest
import torch
import yaml

from encoders.channel_embedding import LookupChannelEmbedding, PositionChannelEmbedding, unit_directions
from encoders.channel_oriented import ChannelOrientedEncoder
from chanmusic.core.electrodes import default_ch_names, electrode_positions

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: no process-wide leak
ROOT = Path(__file__).resolve().parents[1]
NMED = default_ch_names(125)  # E1–E124 + Cz of GSN-HydroCel-129
SFREQ, T, PATCH = 125.0, 250, 125
TEN_TWENTY = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8", "P7", "P3", "Pz", "P4",
              "P8", "O1", "O2"]


def encoder(kind: str = "position", **kw) -> ChannelOrientedEncoder:
    torch.manual_seed(0)
    args = dict(embed_dim=16, depth=2, num_heads=2, patch_size=PATCH, channel_embedding=kind)
    args.update(kw)
    return ChannelOrientedEncoder(125, SFREQ, T, ch_names=NMED, **args).eval()


def test_lookup_keeps_its_state_dict_and_rejects_positions():
    enc = encoder("lookup")
    assert isinstance(enc.channel_embed, LookupChannelEmbedding)
    assert "channel_embed.weight" in enc.state_dict()  # checkpoints written before the switch still load
    x = torch.randn(1, 125, T)
    with pytest.raises(ValueError, match="position"):
        enc(x[:, :3], positions=torch.randn(3, 3))
    with pytest.raises(ValueError, match="position"):
        enc.set_channels(TEN_TWENTY, montage="standard_1005")


def test_subset_in_another_order_equals_masked_full_montage():
    enc = encoder()
    x = torch.randn(2, 125, T)
    g = torch.Generator().manual_seed(1)
    chosen = torch.randperm(125, generator=g)[:32]  # 32 electrodes, in a shuffled order
    mask = torch.zeros(2, 125, dtype=torch.bool)
    mask[:, chosen] = True
    with torch.no_grad():
        full = enc(x, mask)
        pos = enc.channel_positions[chosen]
        by_pos = enc(x[:, chosen], positions=pos)
        by_index = enc(x[:, chosen], channel_index=chosen)
        by_names = copy.deepcopy(enc).set_channels([NMED[i] for i in chosen])(x[:, chosen])
    P = T // PATCH
    grid = full.tokens.view(2, 125, P, -1)[:, chosen].flatten(1, 2)
    for out in (by_pos, by_index, by_names):
        torch.testing.assert_close(out.pooled, full.pooled, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.tokens, grid, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.channel_attention, full.channel_attention[:, chosen], atol=1e-5, rtol=1e-5)


def test_runs_on_a_10_20_montage_with_the_trained_weights():
    trained = encoder()
    sd = trained.state_dict()
    # a fresh model built for a 10-20 cap loads the EGI-trained weights unchanged (positions are not weights)
    ten = ChannelOrientedEncoder(len(TEN_TWENTY), SFREQ, T, ch_names=TEN_TWENTY, embed_dim=16, depth=2, num_heads=2,
                                 patch_size=PATCH, channel_embedding="position", montage="standard_1005").eval()
    ten.load_state_dict(sd, strict=True)
    switched = copy.deepcopy(trained).set_channels(TEN_TWENTY, montage="standard_1005")
    assert switched.n_channels == 19 and switched.n_tokens == 19 * (T // PATCH)
    x = torch.randn(3, 19, T)
    mask = torch.ones(3, 19, dtype=torch.bool)
    mask[0, :5] = False
    with torch.no_grad():
        a, b = ten(x, mask), switched(x, mask)
    assert a.pooled.shape == (3, 16) and a.tokens.shape == (3, 19 * 2, 16)
    assert torch.isfinite(a.pooled).all()
    torch.testing.assert_close(a.pooled, b.pooled, atol=1e-5, rtol=1e-5)
    # the 10-20 Cz is MNE's template Cz, close to the EGI Cz: its embedding is near the EGI one
    emb = trained.channel_embed
    with torch.no_grad():
        cz_1005 = emb(torch.from_numpy(electrode_positions(["Cz"], "standard_1005")).float())
        cz_egi, oz_egi = emb(trained.channel_positions[[NMED.index("Cz"), NMED.index("E75")]]).unbind(0)
    assert (cz_1005[0] - cz_egi).norm() < (cz_1005[0] - oz_egi).norm()


def test_embedding_depends_on_direction_only():
    emb = PositionChannelEmbedding(8)
    p = torch.randn(5, 3) * 0.09
    with torch.no_grad():
        torch.testing.assert_close(emb(p), emb(p * 1000.0), atol=1e-5, rtol=1e-5)  # metres or millimetres
        torch.testing.assert_close(emb(p[[3, 1, 4, 0, 2]]), emb(p)[[3, 1, 4, 0, 2]])  # order-free
    u = unit_directions(p)
    torch.testing.assert_close(u.norm(dim=-1), torch.ones(5))
    assert "freqs" in emb.state_dict()  # the random features travel with the checkpoint


def test_position_encoder_trains_through_a_mask():
    enc = encoder().train()
    x = torch.randn(2, 125, T)
    mask = torch.rand(2, 125) > 0.5
    enc(x, mask).pooled.square().mean().backward()
    assert enc.channel_embed.mlp[0].weight.grad is not None and enc.channel_embed.mlp[0].weight.grad.abs().sum() > 0


def test_yaml_switch():
    cfg = yaml.safe_load((ROOT / "experiments" / "encoders" / "channel_oriented_pos.yaml").read_text())
    init = cfg["model"]["init_args"]
    assert init["encoder"]["init_args"]["channel_embedding"] == "position"
    assert init["head"] != "tokens"  # a tokens readout would tie the model to the training grid
    enc = ChannelOrientedEncoder(125, SFREQ, T, ch_names=NMED, **init["encoder"]["init_args"])
    assert isinstance(enc.channel_embed, PositionChannelEmbedding)
    with pytest.raises(ValueError, match="not in montage"):
        ChannelOrientedEncoder(2, SFREQ, T, ch_names=["Fz", "nope"], channel_embedding="position",
                               montage="standard_1005")

"""Absent channels are left out of LaBraM, CBraMod and EEGPT (``absent="remove"``): the same output as a recording
without them. CPU, tiny sizes."""
from __future__ import annotations

import pytest
import torch

from encoders.cbramod import CBraModEncoder
from encoders.eegpt import EEGPTEncoder
from encoders.labram import LaBraMEncoder
from chanmusic.core.electrodes import NMED_CH_NAMES

SFREQ, N_TIMES, C = 125.0, 250, 40
NAMES = list(NMED_CH_NAMES)[:C]
TINY = {
    "labram": (LaBraMEncoder, dict(embed_dim=100, num_layers=2, num_heads=4, channel_set="all")),
    "eegpt": (EEGPTEncoder, dict(embed_dim=32, embed_num=2, depth=2, num_heads=4, channel_set="all")),
    "cbramod": (CBraModEncoder, dict(n_layer=2, nhead=4, dim_feedforward=64, dropout=0.0)),
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def build(name: str, names=NAMES, **kw):
    cls, size = TINY[name]
    torch.manual_seed(0)
    return cls(len(names), SFREQ, N_TIMES, names, **{**size, **kw}).eval()


def _data(seed=0, b=3):
    g = torch.Generator().manual_seed(seed)
    eeg = torch.randn(b, C, N_TIMES, generator=g)
    mask = torch.ones(b, C, dtype=torch.bool)
    mask[0, [3, 7, 20]] = False       # sample 0: three electrodes missing
    mask[1, [3, 7, 20]] = False       # sample 1: the same three (one call for both)
    mask[2, 30:] = False              # sample 2: ten others
    return eeg, mask


def _direct(enc, x, kept):
    """The braindecode model itself on the kept model channels only (what a recording without the rest gives)."""
    if isinstance(enc, LaBraMEncoder):
        return enc.model(x[:, kept], return_features=True, ch_names=[enc.model_ch_names[i] for i in kept])["features"]
    if isinstance(enc, CBraModEncoder):
        return enc.model(x[:, kept], return_features=True)["features"].flatten(1, 2)
    from braindecode.models import EEGPT

    ref = EEGPT(n_outputs=1, n_chans=len(kept), chs_info=[{"ch_name": enc.model_ch_names[i]} for i in kept],
                n_times=enc.model_times, sfreq=enc.model_sfreq, patch_size=enc.patch_size, patch_stride=None,
                embed_num=2, embed_dim=32, depth=2, num_heads=4, return_encoder_output=True, chan_proj_type="none")
    ref.target_encoder.chan_embed = torch.nn.Embedding(62, 32)
    ref.target_encoder.load_state_dict(enc.model.target_encoder.state_dict())
    return ref.eval()(x[:, kept], return_features=True)["features"]


@pytest.mark.parametrize("name", ["labram", "cbramod", "eegpt"])
def test_removal_equals_the_model_on_present_channels_only(name):
    enc = build(name)
    eeg, mask = _data()
    with torch.no_grad():
        out = enc(eeg, mask)
        x, present = enc.prepare(eeg, mask)
        for b in range(len(eeg)):
            kept = present[b].nonzero().squeeze(1).tolist()
            ref = _direct(enc, x[b:b + 1], kept)[0]
            if name == "eegpt":  # one token per patch, computed from the present channels
                assert torch.allclose(out.tokens[b], ref, atol=1e-5)
                continue
            grid = out.tokens[b].reshape(enc.n_model_channels, enc.n_patches, -1)
            assert torch.allclose(grid[kept].flatten(0, 1), ref, atol=1e-5)
            absent = [i for i in range(enc.n_model_channels) if i not in kept]
            assert absent and grid[absent].abs().max() == 0
            assert torch.equal(out.token_mask[b], present[b].repeat_interleave(enc.n_patches))
            assert torch.allclose(out.pooled[b], ref.mean(0), atol=1e-5)  # pooled: mean of present tokens


@pytest.mark.parametrize("name", ["labram", "eegpt"])
def test_removal_equals_a_recording_without_those_electrodes(name):
    """Named models (channel_set all: each electrode keeps its own name): the encoder of the full montage with a
    mask gives what an encoder built on the recording that lacks the electrodes gives (same weights)."""
    enc = build(name)
    eeg, mask = _data()
    drop = [3, 7, 20]
    keep = [i for i in range(C) if i not in drop]
    small = build(name, names=[NAMES[i] for i in keep])
    small.load_state_dict({k: v for k, v in enc.state_dict().items() if k != "model.chans_id"}, strict=False)
    assert set(small.state_dict()) - set(enc.state_dict()) == set()  # only the channel-id buffer is its own
    with torch.no_grad():
        a = enc(eeg[:2], mask[:2])
        b = small(eeg[:2, keep])
    assert torch.allclose(a.pooled, b.pooled, atol=1e-5)
    if name == "labram":
        grid = a.tokens.reshape(2, C, enc.n_patches, -1)[:, keep].flatten(1, 2)
        assert torch.allclose(grid, b.tokens, atol=1e-5)
    else:
        assert torch.allclose(a.tokens, b.tokens, atol=1e-5)


@pytest.mark.parametrize("name", ["labram", "cbramod", "eegpt"])
def test_zero_fill_differs_and_full_mask_is_the_plain_forward(name):
    enc = build(name)
    eeg, mask = _data()
    with torch.no_grad():
        removed = enc(eeg, mask).pooled
        enc.absent = "zero"
        zeroed = enc(eeg, mask).pooled
        full_zero = enc(eeg, torch.ones_like(mask)).pooled
        enc.absent = "remove"
        full = enc(eeg, torch.ones_like(mask)).pooled
    assert not torch.allclose(removed, zeroed, atol=1e-4)  # absent tokens were attended to under zero-fill
    assert torch.equal(full, full_zero)


def test_removal_under_per_sample_masks_keeps_gradients():
    enc = build("cbramod").train()
    eeg, _ = _data()
    mask = torch.rand(3, C, generator=torch.Generator().manual_seed(1)) > 0.5
    out = enc(eeg, mask)
    out.pooled.sum().backward()
    grads = [p.grad for p in enc.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_bad_absent_option_is_refused():
    with pytest.raises(ValueError, match="absent"):
        build("labram", absent="drop")

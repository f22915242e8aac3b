"""The channel-oriented row's channel gain (encoders.token_gain, docs/learning_curve.md): on average-referenced
EEG whose response has a different sign on different electrodes, the authors' StatHead (a mean over the
present tokens) cannot read the music without it and can with it. A toy generator written for this test
(not the demo's), CPU, a few seconds."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from chanmusic.modules.heads import build_head
from chanmusic.modules.losses import clip_loss
from encoders.channel_oriented import ChannelOrientedEncoder
from encoders.token_gain import TokenGain

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
C, T, N_SONGS = 24, 250, 6
AMP = 0.1  # per electrode, in unit noise: weak, as at -9 dB and below (at 0.3 even the mean reads it, by nonlinearity)


def _toy(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """EEG [n, C, T]: one smooth waveform per song, on every electrode with a fixed random sign, in unit noise,
    then average-referenced (so the electrodes' sum holds no music); song index [n]."""
    fixed = torch.Generator().manual_seed(7)
    wave = torch.randn(N_SONGS, T, generator=fixed).cumsum(-1)
    wave = (wave - wave.mean(-1, keepdim=True)) / wave.std(-1, keepdim=True)
    sign = torch.randn(C, generator=fixed).sign()
    g = torch.Generator().manual_seed(seed)
    song = torch.randint(0, N_SONGS, (n,), generator=g)
    eeg = torch.randn(n, C, T, generator=g) + AMP * sign[:, None] * wave[song][:, None, :]
    return eeg - eeg.mean(1, keepdim=True), song


def _song_accuracy(gain: bool, steps: int = 60) -> float:
    torch.manual_seed(0)
    enc = ChannelOrientedEncoder(C, 125.0, T, embed_dim=32, depth=1, num_heads=4, patch_size=125, channel_gain=gain)
    head = build_head("temporal", 32, 32, hidden=64)
    targets = F.normalize(torch.randn(N_SONGS, 32, generator=torch.Generator().manual_seed(3)), dim=-1)
    scale = torch.tensor(2.66)  # log(1 / 0.07)
    opt = torch.optim.AdamW([*enc.parameters(), *head.parameters()], lr=1e-3, weight_decay=0.05)
    for step in range(steps):
        eeg, song = _toy(48, seed=step)
        loss = clip_loss(head(enc(eeg)), targets[song], scale, song)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        eeg, song = _toy(240, seed=10_000)  # new noise
        pred = (F.normalize(head(enc.eval()(eeg)), dim=-1) @ targets.T).argmax(-1)
    return float((pred == song).float().mean())


def test_the_gain_lets_a_mean_readout_read_a_signed_response():
    without, with_gain = _song_accuracy(False), _song_accuracy(True)
    assert without < 0.3  # chance 1/6: the mean cancels the signed response (measured 0.21)
    assert with_gain > 0.45 and with_gain > without + 0.25  # measured 0.60


def test_gain_draw_and_learning_rate_scale():
    torch.manual_seed(0)
    g = TokenGain(10, 4, std=1.0, lr_scale=10.0)
    assert torch.equal(g.gain, g.weight * 10.0) and g.gain.std() > 0.5
    assert torch.equal(TokenGain(3, 2, std=0.0, lr_scale=10.0).gain, torch.ones(3, 2))
    x, rows = torch.randn(2, 3, 1, 4), torch.tensor([[0, 5, 9], [1, 2, 3]])
    torch.testing.assert_close(g(x, rows), x * g.gain[rows][:, :, None, :])
    with pytest.raises(ValueError, match="channel_gain"):
        TokenGain(3, 2, std=-1.0, lr_scale=10.0)


def test_only_a_pretraining_checkpoint_may_lack_the_gain(tmp_path):
    from chanmusic.stages.init_from import load_encoder_weights
    from chanmusic.core.checkpoints import CheckpointError

    plain = ChannelOrientedEncoder(C, 125.0, T, embed_dim=16, depth=1, num_heads=2, patch_size=125)
    sd = {f"{p}{k}": v for p in ("encoder.", "teacher_encoder.") for k, v in plain.state_dict().items()}
    pre = tmp_path / "pre.ckpt"
    torch.save({"state_dict": sd, "chanmusic_encoders": {"student": "encoder.", "teacher": "teacher_encoder."}}, pre)
    gained = ChannelOrientedEncoder(C, 125.0, T, embed_dim=16, depth=1, num_heads=2, patch_size=125, channel_gain=True)
    drawn = gained.channel_gain.weight.detach().clone()
    load_encoder_weights(gained, pre)  # pretraining reads the CLS: the gain keeps its draw
    assert torch.equal(gained.channel_gain.weight, drawn)
    aligned = tmp_path / "aligned.ckpt"
    torch.save({"state_dict": {k: v for k, v in sd.items() if k.startswith("encoder.")}}, aligned)
    with pytest.raises(CheckpointError, match="channel_gain"):  # an aligned run without it was another model
        load_encoder_weights(gained, aligned)

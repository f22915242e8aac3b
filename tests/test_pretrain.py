"""Pretraining (DINO-style self-distillation): views, EMA teacher, loss, collapse monitor, checkpoint -> align."""
import math
import warnings
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from callbacks.collapse_monitor import CollapseMonitor
from chanmusic.modules.channel_dropout import drop_channels
from chanmusic.modules.views import MultiCropEEG, gaussian_noise, temporal_crop
from chanmusic.modules.losses import dino_loss
from chanmusic.stages.pretrain import PretrainModule
from encoders.channel_oriented import ChannelOrientedEncoder

C, SFREQ, T = 8, 64.0, 64


def toy_eeg(n=256, seed=0):
    """Windows from 4 latent states, each a channel-specific oscillation (random phase) under noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T) / SFREQ
    freqs = torch.tensor([3.0, 7.0, 11.0, 17.0])
    gains = torch.randn(4, C, generator=g)
    state = torch.randint(0, 4, (n,), generator=g)
    phase = torch.rand(n, 1, 1, generator=g) * 2 * math.pi
    wave = torch.sin(2 * math.pi * freqs[state][:, None, None] * t + phase)
    return gains[state][:, :, None] * wave + 0.5 * torch.randn(n, C, T, generator=g)


def tiny_module(**kw):
    torch.manual_seed(0)
    enc = ChannelOrientedEncoder(C, SFREQ, T, embed_dim=32, depth=1, num_heads=2, patch_size=16)
    args = dict(out_dim=64, head_hidden_dim=64, bottleneck_dim=16, n_global=2, n_local=2, channel_dropout=0.25,
                lr=5e-4, momentum_start=0.996)
    args.update(kw)
    return PretrainModule(enc, **args)


# ---------------------------------------------------------------------------------------------- views
def test_crops_noise_and_subsets_follow_their_sizes():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, C, 100)
    assert temporal_crop(x, (0.3, 0.6), 40, g, resize=True).shape == (5, C, 40)
    exact = temporal_crop(x, (0.5, 0.5), 50, g)  # native crop of 50 samples: a contiguous slice
    for b in range(5):
        starts = [s for s in range(51) if torch.equal(x[b, :, s:s + 50], exact[b])]
        assert len(starts) == 1
    with pytest.raises(ValueError):
        temporal_crop(x, (0.0, 0.5))
    views = MultiCropEEG(3, 5, (0.5, 1.0), (0.1, 0.3), 100, 48, 0.0, 0.0, resize=True)(x, g)
    assert len(views.global_views) == 3 and len(views.local_views) == 5
    assert all(v.shape == (5, C, 100) for v in views.global_views)
    assert all(v.shape == (5, C, 48) for v in views.local_views)
    noisy = gaussian_noise(torch.zeros(2000, 50), 0.1, g)
    assert abs(float(noisy.std()) - 0.1) < 0.005
    mask = torch.ones(6, 20, dtype=torch.bool)
    mask[:, 0] = False
    sub = drop_channels(mask, 0.3, g)
    assert torch.all((~sub).sum(1) == 1 + 6) and not bool(sub[:, 0].any())

    m = tiny_module(channel_dropout=0.5)
    assert m.global_len == T and m.local_len == 32  # half the window, a multiple of the patch
    assert torch.all((~m.drop(torch.ones(4, C, dtype=torch.bool))).sum(1) == 4)


# ---------------------------------------------------------------------------------------------- teacher
def test_teacher_starts_as_copy_gets_no_gradients_and_follows_the_ema():
    m = tiny_module()
    for (n, s), t in zip(m.encoder.named_parameters(), m.teacher_encoder.parameters()):
        assert torch.equal(s, t), n
    for s, t in zip(m.head.parameters(), m.teacher_head.parameters()):
        assert torch.equal(s, t)
    loss, stats, _ = m._distill({"eeg": toy_eeg(16)})
    loss.backward()
    assert all(not p.requires_grad and p.grad is None
               for p in list(m.teacher_encoder.parameters()) + list(m.teacher_head.parameters()))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.encoder.parameters())
    with torch.no_grad():  # move the student away from the teacher
        for p in list(m.encoder.parameters()) + list(m.head.parameters()):
            p.add_(torch.randn_like(p))
    t0 = [p.detach().clone() for p in list(m.teacher_encoder.parameters()) + list(m.teacher_head.parameters())]
    s0 = [p.detach().clone() for p in list(m.encoder.parameters()) + list(m.head.parameters())]
    m.update_teacher(0.9)
    for t, a, b in zip(list(m.teacher_encoder.parameters()) + list(m.teacher_head.parameters()), t0, s0):
        torch.testing.assert_close(t, 0.9 * a + 0.1 * b)
    # cosine schedule start -> end over the run
    m._total_steps = 100
    assert m.momentum_at(0) == pytest.approx(0.996)
    assert m.momentum_at(100) == pytest.approx(1.0)
    assert m.momentum_at(50) == pytest.approx(1.0 - 0.004 * 0.5 * (1 + math.cos(math.pi * 0.5)), abs=1e-4)


def test_dino_loss_matches_lightly_when_same_view_pairs_are_skipped():
    from lightly.loss import DINOLoss

    g = torch.Generator().manual_seed(0)
    t = torch.randn(2, 6, 32, generator=g)
    s = torch.randn(5, 6, 32, generator=g)
    pairs = torch.ones(2, 5, dtype=torch.bool)
    pairs[0, 0] = pairs[1, 1] = False
    ours, stats = dino_loss(t, s, torch.zeros(32), 0.04, 0.1, pairs)
    ref = DINOLoss(32, warmup_teacher_temp=0.04, teacher_temp=0.04, student_temp=0.1)(list(t), list(s))
    torch.testing.assert_close(ours, ref)
    assert 0 <= stats["teacher_entropy"] <= math.log(32) and stats["kl"] >= 0
    assert stats["teacher_batch_entropy"] >= stats["teacher_entropy"] - 1e-6


# ---------------------------------------------------------------------------------------------- learning
def test_pretraining_lowers_its_loss_without_collapse():
    """40 steps: the loss falls (the student learns to predict the teacher across crops and channel subsets)
    while the teacher stays between the collapse modes. This is DINO's early phase; the sample/prototype
    mutual information is still small here and grows with longer runs."""
    m = tiny_module()
    x = toy_eeg()
    opt = m.configure_optimizers()["optimizer"]
    g = torch.Generator().manual_seed(1)
    hist = []
    for _ in range(40):
        batch = {"eeg": x[torch.randint(0, len(x), (32,), generator=g)]}
        loss, stats, t_out = m._distill(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        m.update_center(t_out)
        m.update_teacher(0.996)
        hist.append({"loss": float(loss.detach()), **{k: float(v) for k, v in stats.items()}})
    log_k = math.log(64)
    first = sum(h["loss"] for h in hist[:5]) / 5
    last = sum(h["loss"] for h in hist[-5:]) / 5
    assert all(math.isfinite(h["loss"]) for h in hist)
    assert last < 0.85 * first, (first, last)
    end = hist[-5:]
    assert max(h["teacher_entropy"] for h in end) < 0.95 * log_k  # not uniform
    assert min(h["teacher_batch_entropy"] for h in end) > 0.3 * log_k  # not one prototype for all
    assert min(h["teacher_mi"] for h in end) > 0.01  # the prototype still depends on the window
    assert min(h["embedding_std"] for h in end) > 0.005  # student embeddings are not all the same


class _Windows(Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"eeg": self.x[i], "channel_mask": torch.ones(C, dtype=torch.bool), "song": 0}


def test_lightning_fit_writes_a_checkpoint_that_align_loads(tmp_path):
    import lightning as L

    from chanmusic.stages.align import AlignModule
    from chanmusic.stages.init_from import load_encoder_weights, safe_load

    m = tiny_module(warmup_steps=2)
    x = toy_eeg(64)
    ckpt_cb = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True, monitor="val/loss")
    trainer = L.Trainer(max_steps=4, limit_val_batches=1, val_check_interval=4, logger=False, accelerator="cpu",
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[ckpt_cb],
                        num_sanity_val_steps=0, default_root_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(m, DataLoader(_Windows(x), batch_size=16, shuffle=True), DataLoader(_Windows(x[:16]), batch_size=16))
    assert any(isinstance(cb, CollapseMonitor) for cb in trainer.callbacks)
    assert "train/loss" in trainer.callback_metrics and "val/loss" in trainer.callback_metrics
    assert bool(m.center_initialised) and m._momentum > 0.99
    last = tmp_path / "last.ckpt"
    sd = safe_load(last)["state_dict"]  # loads with weights_only=True
    assert any(k.startswith("teacher_encoder.") for k in sd) and any(k.startswith("encoder.") for k in sd)
    fresh = ChannelOrientedEncoder(C, SFREQ, T, embed_dim=32, depth=1, num_heads=2, patch_size=16)
    assert safe_load(last)["chanmusic_encoders"] == {"student": "encoder.", "teacher": "teacher_encoder."}
    assert load_encoder_weights(fresh, last) == "teacher_encoder."  # the EMA teacher by default
    for k, v in fresh.state_dict().items():
        torch.testing.assert_close(v, m.teacher_encoder.state_dict()[k])
    enc2 = ChannelOrientedEncoder(C, SFREQ, T, embed_dim=32, depth=1, num_heads=2, patch_size=16)
    align = AlignModule(enc2, clap_dim=16, head="temporal", head_hidden=4, init_from=str(last),
                        init_from_encoder="student")
    torch.testing.assert_close(align.encoder.patch_embed.weight, m.encoder.patch_embed.weight)
    assert not torch.equal(m.encoder.patch_embed.weight, m.teacher_encoder.patch_embed.weight)


# ---------------------------------------------------------------------------------------------- monitor
def _feed(mon, h, hb, steps, out_dim=64):
    module = SimpleNamespace(hparams={"out_dim": out_dim}, collapse_stats={}, log=lambda *a, **k: None)
    for i in range(steps):
        module.collapse_stats = {"teacher_entropy": h, "teacher_batch_entropy": hb, "kl": 0.01}
        mon.on_train_batch_end(SimpleNamespace(global_step=i, callback_metrics={}), module, None, None, i)


def test_collapse_monitor_warns_on_both_kinds_only_after_patience():
    log_k = math.log(64)
    healthy = CollapseMonitor(patience=5)
    _feed(healthy, 0.3 * log_k, 0.8 * log_k, 20)  # sharp per sample, spread over the batch
    assert healthy.status == "ok" and not healthy.warnings
    uniform = CollapseMonitor(patience=5)
    with pytest.warns(UserWarning, match="uniform"):
        _feed(uniform, 0.999 * log_k, 0.999 * log_k, 6)
    assert uniform.status == "uniform" and len(uniform.warnings) == 1
    one = CollapseMonitor(patience=5)
    _feed(one, 0.01 * log_k, 0.01 * log_k, 4)
    assert one.status == "ok"  # not yet: patience
    with pytest.warns(UserWarning, match="one-dimension"):
        _feed(one, 0.01 * log_k, 0.01 * log_k, 2)

"""Reconstruction metrics (chanmusic.evaluation.metrics): SSIM / PSNR on log-mels, CLAP score, label agreement."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from chanmusic.evaluation.metrics import (PSNR_MAX_DB, ClapScore, LabelAgreement, MelPSNR, MelSSIM, crop_frames,
                               joint_minmax, mel_psnr, mel_ssim)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _mels(b=3, f=64, n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, f, n, generator=g) * 2.0 - 6.0  # log-mel-like values


def test_joint_minmax_scales_each_pair_together():
    a = torch.tensor([[[0.0, 2.0]], [[5.0, 5.0]]])
    b = torch.tensor([[[4.0, 1.0]], [[5.0, 5.0]]])
    sa, sb = joint_minmax(a, b)
    assert torch.allclose(sa[0], torch.tensor([[0.0, 0.5]])) and torch.allclose(sb[0], torch.tensor([[1.0, 0.25]]))
    assert torch.equal(sa[1], torch.zeros(1, 2)) and torch.equal(sb[1], torch.zeros(1, 2))  # constant pair -> 0


def test_ssim_of_identical_mels_is_one_and_less_otherwise():
    m = _mels()
    assert torch.allclose(mel_ssim(m, m.clone()), torch.ones(3), atol=1e-6)
    other = _mels(seed=1)
    assert (mel_ssim(other, m) < 0.5).all()
    metric = MelSSIM()
    metric.update(m, m.clone(), torch.tensor([0, 1, 2]))
    r = metric.compute()
    assert r["mean"].item() == pytest.approx(1.0, abs=1e-6) and r["std"].item() == pytest.approx(0.0, abs=1e-6)
    assert int(r["n"]) == 3 and math.isnan(r["chance"].item())


def test_ssim_crops_to_equal_frames():
    m = _mels(n=130)
    longer = torch.cat([m, torch.randn(3, 64, 7)], dim=-1)  # generated audio a few frames longer
    assert torch.allclose(mel_ssim(longer, m), torch.ones(3), atol=1e-6)
    a, b = crop_frames(longer, m)
    assert a.shape == b.shape == m.shape


def test_psnr_on_a_known_pair():
    # after joint min-max the pair is (zeros, half zeros / half ones): MSE 0.5 -> 10*log10(1/0.5) dB
    true = torch.zeros(1, 64, 40)
    true[..., 20:] = 1.0
    gen = torch.zeros(1, 64, 40)
    expected = 10 * math.log10(1 / 0.5)
    assert mel_psnr(gen, true).item() == pytest.approx(expected, abs=1e-4)
    # the convention is invariant to a common affine change of units (log-mel floor -11.5, any gain)
    assert mel_psnr(gen * 7 - 11.5, true * 7 - 11.5).item() == pytest.approx(expected, abs=1e-4)
    # a quarter of the cells off by 1 -> MSE 0.25 -> 6.02 dB
    gen2 = true.clone()
    gen2[..., :10] = 1.0
    assert mel_psnr(gen2, true).item() == pytest.approx(10 * math.log10(4), abs=1e-4)
    # identical spectrograms: +inf, reported as the cap so metrics.json stays standard JSON
    m = _mels()
    v = mel_psnr(m, m.clone())
    assert torch.isfinite(v).all() and torch.equal(v, torch.full((3,), PSNR_MAX_DB))


def test_per_item_metrics_count_each_segment_once():
    m, o = _mels(), _mels(seed=5)
    metric = MelPSNR()
    metric.update(o, m, torch.tensor([4, 5, 6]))
    metric.update(o[:1], m[:1], torch.tensor([4]))  # DDP padding repeats window 4
    r = metric.compute()
    assert int(r["n"]) == 3
    assert r["mean"].item() == pytest.approx(mel_psnr(o, m).mean().item(), rel=1e-5)
    no_ids = MelPSNR()
    no_ids.update(o, m)
    no_ids.update(o[:1], m[:1])
    assert int(no_ids.compute()["n"]) == 4  # unknown ids: nothing deduplicated


def test_clap_score_and_its_mismatched_chance():
    eye = torch.eye(4)[:3]  # three orthonormal "true" embeddings
    s = ClapScore()
    s.update(eye * 3.0, eye, music=torch.tensor([0, 1, 2]), segment=torch.tensor([0, 1, 2]))  # norm does not matter
    r = s.compute()
    assert r["mean"].item() == pytest.approx(1.0) and r["chance"].item() == pytest.approx(0.0, abs=1e-7)
    # generated = the next item's true embedding: score 0, mismatched baseline 1/2
    s = ClapScore()
    s.update(eye.roll(-1, 0), eye, music=torch.tensor([0, 1, 2]), segment=torch.tensor([0, 1, 2]))
    r = s.compute()
    assert r["mean"].item() == pytest.approx(0.0, abs=1e-7) and r["chance"].item() == pytest.approx(0.5)
    # two windows of the same music (two subjects) are not each other's mismatch
    s = ClapScore()
    s.update(eye[[0, 0, 1]], eye[[0, 0, 1]], music=torch.tensor([7, 7, 8]), segment=torch.tensor([0, 1, 2]))
    assert s.compute()["chance"].item() == pytest.approx(0.0, abs=1e-7)


def test_clap_score_of_true_audio_with_itself_is_one():
    from chanmusic.audio import load_clap

    clap = load_clap("tiny-random", seed=0)
    t = np.arange(32000) / 16000.0
    audio = np.stack([0.3 * np.sin(2 * np.pi * f * t) for f in (220.0, 330.0, 495.0)]).astype(np.float32)
    a, b = clap.embed(audio, 16000), clap.embed(audio.copy(), 16000)
    s = ClapScore()
    s.update(a, b, music=torch.arange(3), segment=torch.arange(3))
    assert s.compute()["mean"].item() == pytest.approx(1.0, abs=1e-5)


def test_label_agreement_and_chance():
    m = LabelAgreement()
    m.update(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), torch.arange(4))
    r = m.compute()
    assert r["mean"].item() == pytest.approx(0.75)
    # marginals: pred {0: .25, 1: .5, 2: .25}, ref {0: .25, 1: .25, 2: .5} -> .0625 + .125 + .125
    assert r["chance"].item() == pytest.approx(0.3125)


def test_mel_metrics_ignore_mixed_precision():
    """Under ``--trainer.precision bf16-mixed`` the metric update runs inside autocast; SSIM's convolution must not
    drop to bf16 (measured: 0.0635 instead of 0.0545 on the demo before the fix)."""
    g, t = _mels(seed=2), _mels(seed=3)
    ref_ssim, ref_psnr = mel_ssim(g, t), mel_psnr(g, t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(mel_ssim(g, t), ref_ssim) and torch.equal(mel_psnr(g, t), ref_psnr)

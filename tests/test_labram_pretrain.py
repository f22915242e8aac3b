"""LaBraM pretraining on NMED (chanmusic.stages.labram_pretrain): the VQ-NSP tokenizer's pieces, the masking hook on
braindecode's Labram, and the two phases of one fit whose encoder weights load into alignment. CPU, tiny sizes."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from chanmusic.modules.vqnsp import NormEMAQuantizer, spectral_targets
from chanmusic.stages.init_from import load_encoder_weights
from chanmusic.stages.labram_pretrain import LabramPretrainModule
from encoders.labram import LaBraMEncoder
from chanmusic.core.electrodes import NMED_CH_NAMES

SFREQ, N_TIMES, C = 125.0, 250, 12
NAMES = list(NMED_CH_NAMES)[:C]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _encoder(seed=0):
    torch.manual_seed(seed)
    return LaBraMEncoder(C, SFREQ, N_TIMES, NAMES, channel_set="all", embed_dim=100, num_layers=1, num_heads=4)


def _module(**kw):
    return LabramPretrainModule(_encoder(), tokenizer_depth=1, decoder_depth=1, n_codes=16, code_dim=8, **kw)


def test_quantizer_picks_the_nearest_code_and_moves_it_towards_its_vectors():
    torch.manual_seed(0)
    q = NormEMAQuantizer(8, 4, decay=0.5, kmeans_init=False)
    z = torch.randn(50, 4, requires_grad=True)
    before = q.codebook.clone()
    z_q, loss, ids = q(z)
    zn = torch.nn.functional.normalize(z.detach(), dim=-1)
    brute = torch.cdist(zn, before).argmin(1)  # Euclidean nearest of the unit vectors
    assert torch.equal(ids, brute) and loss > 0
    z_q.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0  # straight-through
    used = ids.unique()
    for k in used.tolist():  # each used code moved towards the mean of its vectors, stays unit length
        target = torch.nn.functional.normalize(zn[ids == k].mean(0), dim=0)
        assert (q.codebook[k] @ target) > (before[k] @ target) - 1e-6
    assert torch.allclose(q.codebook.norm(dim=1), torch.ones(8), atol=1e-5)
    unused = [k for k in range(8) if k not in used.tolist()]
    assert torch.equal(q.codebook[unused], before[unused])


def test_quantizer_kmeans_init_uses_the_first_batch():
    torch.manual_seed(0)
    q = NormEMAQuantizer(4, 3, kmeans_init=True)
    centres = torch.nn.functional.normalize(torch.eye(3)[[0, 1, 2, 0]] + torch.tensor([0, 0, 0, 1.0]).unsqueeze(1), dim=1)
    z = centres.repeat(25, 1) + 0.01 * torch.randn(100, 3)
    q(z)
    assert bool(q.initted) and (q.codebook @ torch.nn.functional.normalize(z, dim=1).T).max(0).values.min() > 0.99


def test_spectral_targets_are_the_patch_fft_standardised():
    t = np.arange(200) / 200.0
    x = torch.tensor(np.stack([np.sin(2 * np.pi * 10 * t), np.sin(2 * np.pi * 25 * t)]), dtype=torch.float32)
    x = x.reshape(1, 2, 200).repeat(1, 1, 2)  # 2 channels x 2 patches
    amp, phase = spectral_targets(x, 200)
    assert amp.shape == (1, 4, 200) and phase.shape == (1, 4, 200)
    ref = np.abs(np.fft.fft(x.numpy().reshape(1, 2, 2, 200), axis=-1)).reshape(1, 4, 200)
    ref = (ref - ref.mean()) / ref.std(ddof=1)
    assert np.allclose(amp.numpy(), ref, atol=1e-4)
    assert amp[0, 0].argmax() in (10, 190) and amp[0, 2].argmax() in (25, 175)
    assert abs(float(amp.mean())) < 1e-5 and abs(float(phase.std()) - 1) < 1e-4


def test_mask_hook_replaces_masked_tokens_only():
    m = _module().eval()
    x = m.encoder.prepare(torch.randn(2, C, N_TIMES))[0]
    n = m.encoder.n_tokens
    seen = {}
    m.encoder.model.patch_embed.register_forward_hook(lambda mod, i, o: seen.__setitem__("out", o))
    with torch.no_grad():
        plain = m.encoder.model(x, return_features=True, ch_names=m.encoder.model_ch_names)["features"]
        none = m._student_logits(x, torch.zeros(2, n, dtype=torch.bool))
        assert torch.allclose(none, m.lm_head(plain), atol=1e-6)  # no mask: the plain model
        mask = torch.zeros(2, n, dtype=torch.bool)
        mask[0, :3] = True
        m._student_logits(x, mask)
        out = seen["out"]
    assert torch.allclose(out[0, :3], m.mask_token[0].expand(3, -1)) and not torch.allclose(out[0, 3], m.mask_token[0, 0])
    assert m._mask is None  # the hook is off outside the student call
    masks = m._random_mask(4, n)
    assert (masks.sum(1) == n - int(n * 0.5)).all()


def test_one_fit_trains_tokenizer_then_student_and_the_encoder_loads_into_alignment(tmp_path):
    import lightning as L

    m = _module(tokenizer_fraction=0.5, warmup_fraction=0.0)
    g = torch.Generator().manual_seed(0)
    items = [{"eeg": torch.randn(C, N_TIMES, generator=g), "channel_mask": torch.ones(C, dtype=torch.bool)}
             for _ in range(16)]
    loader = torch.utils.data.DataLoader(items, batch_size=4)
    snap = lambda mod: {k: v.detach().clone() for k, v in mod.named_parameters()}  # noqa: E731
    states = [(snap(m.encoder), snap(m.tokenizer))]

    class Snap(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if batch_idx == 1:  # after the two tokenizer steps
                states.append((snap(module.encoder), snap(module.tokenizer)))
                self.phase1 = dict(trainer.callback_metrics)

    cb = Snap()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = L.Trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=0, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            default_root_dir=tmp_path, accelerator="cpu", callbacks=[cb])
        trainer.fit(m, loader)
    states.append((snap(m.encoder), snap(m.tokenizer)))
    (e0, t0), (e1, t1), (e2, t2) = states
    same = lambda a, b: all(torch.equal(a[k], b[k]) for k in a)  # noqa: E731
    assert same(e0, e1) and not same(t0, t1)  # phase 1: the tokenizer learns, the student waits
    assert not same(e1, e2) and same(t1, t2)  # phase 2: masked EEG modelling; the tokenizer is frozen
    assert "train/tokenizer_loss" in cb.phase1 and "train/mem_loss" not in cb.phase1
    assert np.isfinite(float(trainer.callback_metrics["train/mem_loss"]))
    path = tmp_path / "pre.ckpt"
    trainer.save_checkpoint(path)
    fresh = _encoder(seed=1)
    load_encoder_weights(fresh, path)  # strict: the alignment encoder takes exactly the student's weights
    assert all(torch.equal(fresh.state_dict()[k], m.encoder.state_dict()[k]) for k in fresh.state_dict())


def test_wrong_encoder_is_refused():
    from encoders.linear_reference import LinearReference

    with pytest.raises(ValueError, match="LaBraMEncoder"):
        LabramPretrainModule(LinearReference(C, SFREQ, N_TIMES, NAMES))

"""chanmusic.audio: mel, CLAP embedders (tiny random, laion-clap file, transformers folder), AudioLDM generator.

Everything runs offline on the CPU with tiny randomly initialised models; the laion-clap test builds the real
HTSAT-tiny audio tower (random weights, ~33 M parameters) three times, which is the slowest part (~10-20 s).
"""
from __future__ import annotations

import importlib.util
import logging

import numpy as np
import pytest
import torch

import chanmusic.audio as A
from chanmusic.audio.clap_laion import build_laion_clap

SR = 16000


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _sine(freq: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _clips(n: int, seconds: float = 2.0, sr: int = SR, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    out = [_sine(220.0 * (i + 1), seconds, sr) + 0.05 * rng.standard_normal(int(seconds * sr)).astype(np.float32)
           for i in range(n)]
    return torch.from_numpy(np.stack(out))


# ------------------------------------------------------------------------------------------------ mel, helpers

def test_import_is_light():
    import subprocess
    import sys

    code = ("import sys, chanmusic.audio; bad = [m for m in ('transformers', 'diffusers', 'laion_clap', "
            "'clap_module', 'librosa') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_log_mel_shape_and_constants():
    assert (A.MEL_SR, A.MEL_HOP, A.N_MELS) == (16000, 160, 64)
    x = torch.from_numpy(_sine(440.0, 5.0))
    m = A.log_mel(x)
    assert m.shape == (64, 501) and m.dtype == torch.float32
    mb = A.log_mel(torch.stack([x, 0.5 * x]))
    assert mb.shape == (2, 64, 501)
    assert torch.allclose(mb[0], m)
    assert A.mel_frames(5 * SR) == 501
    assert A.log_mel(x.numpy()[None]).shape == (1, 64, 501)  # numpy in, torch out


def test_log_mel_matches_librosa():
    """Against a float64 reference: numpy STFT written out (centred, reflect pad, periodic Hann; librosa.stft's
    definition, without its slow first call) and librosa's slaney mel filterbank."""
    import librosa
    from scipy.signal import get_window

    y = _sine(440.0, 1.0) + _sine(1234.0, 1.0, amp=0.2)
    yp = np.pad(y.astype(np.float64), 512, mode="reflect")
    n_frames = 1 + len(y) // 160
    frames = np.stack([yp[i * 160:i * 160 + 1024] for i in range(n_frames)], axis=1)  # [1024, N]
    S = np.abs(np.fft.rfft(frames * get_window("hann", 1024, fftbins=True)[:, None], axis=0))  # [513, N]
    fb = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=0.0, fmax=8000.0, norm="slaney", htk=False)
    lin = fb @ S
    ref = np.log(np.maximum(lin, 1e-5))
    got = A.log_mel(torch.from_numpy(y)).numpy()
    assert got.shape == ref.shape == (64, 101)
    np.testing.assert_allclose(got, ref, atol=2e-2, rtol=0)  # float32 vs float64 in near-empty bands
    strong = lin > 1e-2
    assert strong.mean() > 0.1
    np.testing.assert_allclose(got[strong], ref[strong], atol=1e-3, rtol=0)


def test_log_mel_silence_and_resampled_input():
    m = A.log_mel(torch.zeros(2, SR))
    assert torch.allclose(m, torch.full_like(m, float(np.log(1e-5))))
    # 48 kHz input is resampled to 16 kHz first: same frames, nearly the same mel
    y48 = _sine(440.0, 1.0, sr=48000)
    m48 = A.log_mel(torch.from_numpy(y48), sr=48000)
    m16 = A.log_mel(torch.from_numpy(_sine(440.0, 1.0)))
    assert m48.shape == m16.shape
    peak = m16.argmax(0)
    assert (m48.argmax(0) == peak).float().mean() > 0.9


def test_resample_and_write_wav(tmp_path):
    import soundfile as sf

    y = _sine(440.0, 1.0)
    y48 = A.resample(y, 16000, 48000)
    assert isinstance(y48, np.ndarray) and y48.shape == (48000,)
    back = A.resample(y48, 48000, 16000)
    np.testing.assert_allclose(back[100:-100], y[100:-100], atol=1e-3)
    t = A.resample(torch.from_numpy(np.stack([y, y])), 16000, 22050)
    assert isinstance(t, torch.Tensor) and t.shape == (2, 22050)
    assert A.resample(y, 16000, 16000) is y

    p = A.write_wav(tmp_path / "a" / "x.wav", torch.from_numpy(y), 16000)
    z, sr = sf.read(p, dtype="float32")
    assert sr == 16000 and np.array_equal(z, y)
    p2 = A.write_wav(tmp_path / "y.wav", np.stack([y, 2 * y]), 16000, subtype="PCM_16")
    info = sf.info(p2)
    assert info.subtype == "PCM_16" and info.channels == 2
    z2, _ = sf.read(p2, dtype="float32")
    assert np.abs(z2).max() <= 1.0 and np.abs(z2[:, 0] - y).max() < 1e-4


# ------------------------------------------------------------------------------------------------ tiny CLAP

@pytest.fixture(scope="module")
def tiny_clap():
    return A.load_clap("tiny-random", seed=0)


def test_tiny_clap_announces_itself(caplog):
    with caplog.at_level(logging.WARNING, logger="chanmusic.audio"):
        clap = A.ClapEmbedder.from_config("tiny-random", seed=3)
    assert clap.is_random is True
    assert "RANDOM" in clap.description and "no pretrained meaning" in clap.description
    assert any("RANDOM" in r.getMessage() for r in caplog.records)
    assert clap.dim == 512 and clap.sample_rate == 48000
    assert "seed=3" in clap.identity


def test_tiny_clap_embeddings(tiny_clap):
    x = _clips(3)
    e = tiny_clap.embed(x, SR)
    assert e.shape == (3, 512) and e.dtype == torch.float32
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    # different audio -> different embeddings
    assert (e[0] - e[1]).abs().max() > 1e-4 and (e[1] - e[2]).abs().max() > 1e-4
    # batched == one by one
    one = torch.cat([tiny_clap.embed(x[i], SR) for i in range(3)])
    torch.testing.assert_close(e, one, atol=1e-5, rtol=1e-4)
    # deterministic (exactly equal on a repeat), numpy input accepted, chunked batches
    assert torch.equal(tiny_clap.embed(x.numpy(), SR, batch_size=3), e)
    # a list of clips of different lengths, in chunks of 1
    mixed = tiny_clap.embed([x[0].numpy(), x[1, :SR].numpy()], SR, batch_size=1)
    assert mixed.shape == (2, 512) and torch.allclose(mixed[0], e[0], atol=1e-5)
    assert (mixed[1] - e[1]).abs().max() > 1e-5


def test_tiny_clap_seeding(tiny_clap):
    x = _clips(1)
    ref = tiny_clap.embed(x, SR)
    again = A.load_clap("tiny-random", seed=0)
    assert again.identity == tiny_clap.identity
    assert torch.equal(again.embed(x, SR), ref)
    other = A.load_clap("tiny-random", seed=1)
    assert other.identity != tiny_clap.identity
    assert (other.embed(x, SR) - ref).abs().max() > 1e-3
    # loading leaves the caller's RNG alone
    torch.manual_seed(123)
    a = torch.rand(3)
    torch.manual_seed(123)
    A.load_clap("tiny-random", seed=5)
    assert torch.equal(torch.rand(3), a)


def test_clap_long_clip_is_center_cropped(tiny_clap):
    sr = 48000  # CLAP's own rate: no resampling, so the crop is exact
    long = torch.from_numpy(np.concatenate([_sine(300.0, 1.0, sr), _sine(700.0, 10.0, sr), _sine(1500.0, 1.0, sr)]))
    e = tiny_clap.embed(torch.stack([long, long]), sr)
    assert torch.equal(e[0], e[1])
    torch.testing.assert_close(e[:1], tiny_clap.embed(long[sr:11 * sr], sr), atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ transformers

def _tiny_clap_model(seed: int = 0):
    from transformers import ClapConfig, ClapModel

    cfg = ClapConfig(
        text_config=dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=37, projection_dim=512, max_position_embeddings=80),
        audio_config=dict(hidden_size=128, patch_embeds_hidden_size=16, depths=[1, 1, 1, 1],
                          num_attention_heads=[1, 2, 2, 4], projection_dim=512, num_hidden_layers=4),
        projection_dim=512)
    torch.manual_seed(seed)
    return ClapModel(cfg).eval()


def test_transformers_directory(tmp_path, caplog):
    from transformers import ClapFeatureExtractor

    model = _tiny_clap_model(seed=7)
    fe = ClapFeatureExtractor()
    d = tmp_path / "clap"
    model.save_pretrained(d)
    fe.save_pretrained(d)

    x48 = _clips(2, seconds=2.0, sr=48000).numpy()
    feats = fe(list(x48), sampling_rate=48000, truncation="rand_trunc", padding="repeatpad", return_tensors="pt")
    with torch.no_grad():
        out = model.get_audio_features(input_features=feats["input_features"], is_longer=feats["is_longer"])
    ref = out if isinstance(out, torch.Tensor) else out.pooler_output

    clap = A.load_clap(str(d))
    assert clap.is_random is False and clap.dim == 512 and "transformers" in clap.description
    got = clap.embed(torch.from_numpy(x48), 48000)
    torch.testing.assert_close(got, torch.nn.functional.normalize(ref, dim=-1), atol=1e-5, rtol=1e-4)
    assert str(d.resolve()) in clap.identity

    # a folder without preprocessor_config.json falls back to the default extractor, with a warning
    d2 = tmp_path / "clap_nofe"
    model.save_pretrained(d2)
    with caplog.at_level(logging.WARNING, logger="chanmusic.audio"):
        clap2 = A.load_clap(str(d2))
    assert any("preprocessor_config" in r.getMessage() for r in caplog.records)
    torch.testing.assert_close(clap2.embed(torch.from_numpy(x48), 48000), got, atol=1e-6, rtol=1e-5)


def test_transformers_directory_missing_audio_weight(tmp_path):
    from safetensors.torch import load_file, save_file

    d = tmp_path / "clap"
    _tiny_clap_model().save_pretrained(d)
    f = next(d.glob("*.safetensors"))
    sd = load_file(str(f))
    key = next(k for k in sd if k.startswith("audio_projection."))
    del sd[key]
    save_file(sd, str(f), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        A.load_clap(str(d))


def test_missing_checkpoint_path_fails(tmp_path):
    with pytest.raises(FileNotFoundError):
        A.load_clap(str(tmp_path / "nope.pt"))


# ------------------------------------------------------------------------------------------------ laion-clap file

def _laion_reference_input(w: np.ndarray, clip_samples: int = 480000) -> dict:
    """laion-clap's get_audio_embedding_from_data preprocessing for a <= 10 s 48 kHz clip, written out."""
    q = (np.clip(w, -1, 1) * 32767.0).astype(np.int16).astype(np.float32) / 32767.0
    t = torch.from_numpy(q)
    t = t.repeat(clip_samples // len(t))
    t = torch.nn.functional.pad(t, (0, clip_samples - len(t)))
    return {"waveform": t, "longer": torch.tensor([False])}


@pytest.mark.laion
@pytest.mark.skipif(importlib.util.find_spec("laion_clap") is None,
                    reason="laion-clap not installed: the [laion] extra; `make test-laion` runs this")
def test_laion_checkpoint(tmp_path, caplog):
    torch.manual_seed(11)
    src, _ = build_laion_clap("HTSAT-tiny")
    sd = src.state_dict()
    assert any(k.startswith("text_") for k in sd)  # the file carries text weights too; they are ignored
    ckpt = {"state_dict": {"module." + k: v for k, v in sd.items()},
            "epoch": np.float64(3.0)}  # a numpy scalar, like the official files: weights_only=True refuses it
    path = tmp_path / "clap_tiny.pt"
    torch.save(ckpt, path)

    x48 = _clips(2, seconds=2.0, sr=48000).numpy()
    with torch.no_grad():
        ref = src.get_audio_embedding([_laion_reference_input(w) for w in x48])

    with caplog.at_level(logging.WARNING, logger="chanmusic.audio"):
        clap = A.load_clap(str(path))
    # read by the allow-listed unpickler (numpy scalars are on its list): no weights_only=False fallback
    assert not any("weights_only=False" in r.getMessage() for r in caplog.records)
    assert clap.is_random is False and clap.dim == 512 and "HTSAT-tiny" in clap.description
    assert str(path.resolve()) in clap.identity
    got = clap.embed(torch.from_numpy(x48), 48000)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    assert torch.allclose(got.norm(dim=1), torch.ones(2), atol=1e-5)

    # a renamed audio key is an error naming the key (both sides of the rename)
    bad = {k: v for k, v in sd.items()}
    bad["audio_projection.0.weightX"] = bad.pop("audio_projection.0.weight")
    bad_path = tmp_path / "bad.pt"
    torch.save({"state_dict": bad}, bad_path)
    with pytest.raises(ValueError, match=r"audio_projection\.0\.weightX") as ei:
        A.load_clap(str(bad_path))
    assert "missing keys: audio_projection.0.weight" in str(ei.value)

    # an explicit amodel that contradicts the checkpoint's width fails before building anything
    wide = {"audio_projection.0.weight": torch.zeros(512, 1024)}
    wide_path = tmp_path / "wide.pt"
    torch.save(wide, wide_path)
    with pytest.raises(ValueError, match="HTSAT-base"):
        A.load_clap(str(wide_path), amodel="HTSAT-tiny")
    # an audio width laion-clap has no HTSAT for, without amodel: asks for amodel
    torch.save({"audio_projection.0.weight": torch.zeros(512, 999)}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="pass amodel"):
        A.load_clap(str(tmp_path / "odd.pt"))
    # no audio keys at all
    torch.save({"state_dict": {"text_projection.0.weight": torch.zeros(2, 2)}}, tmp_path / "text.pt")
    with pytest.raises(ValueError, match="no CLAP audio weights"):
        A.load_clap(str(tmp_path / "text.pt"))


# ------------------------------------------------------------------------------------------------ AudioLDM

LEN_S = 1.28  # 128 mel frames: short, to keep the tests fast


@pytest.fixture(scope="module")
def tiny_ldm():
    return A.AudioLDMGenerator.load("tiny-random", seed=0)


def test_tiny_audioldm_generate(tiny_ldm):
    assert tiny_ldm.is_random and "RANDOM" in tiny_ldm.description
    assert tiny_ldm.conditioning_dim == 512 and tiny_ldm.sample_rate == 16000
    assert abs(tiny_ldm.default_length_s - 5.12) < 1e-9
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(2, 512, generator=g)
    kw = dict(audio_length_s=LEN_S, num_inference_steps=2, guidance_scale=2.5)
    a = tiny_ldm.generate(cond, seed=0, **kw)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    assert a.shape == (2, int(LEN_S * 16000)) and np.isfinite(a).all()
    assert a.std() > 1e-3  # audible, not numerically silent
    # seeded: identical again, and independent of the chunking
    np.testing.assert_array_equal(tiny_ldm.generate(cond, seed=0, **kw), a)
    np.testing.assert_allclose(tiny_ldm.generate(cond, seed=0, batch_size=1, **kw), a, atol=1e-5)
    # conditioning is L2-normalised: a scaled vector gives the same audio
    np.testing.assert_allclose(tiny_ldm.generate(3.0 * cond, seed=0, **kw), a, atol=1e-5)
    # different conditioning -> different audio (same noise)
    b = tiny_ldm.generate(torch.stack([cond[1], cond[0]]), seed=0, **kw)
    assert np.abs(b[0] - a[0]).max() > 1e-4
    # no guidance path (no negative embeddings needed)
    c = tiny_ldm.generate(cond[:1], seed=0, audio_length_s=LEN_S, num_inference_steps=2, guidance_scale=1.0)
    assert c.shape == (1, int(LEN_S * 16000)) and np.isfinite(c).all()
    with pytest.raises(ValueError, match="512"):
        tiny_ldm.generate(torch.randn(2, 64), **kw)
    with pytest.raises(ValueError, match="tokenizer"):
        tiny_ldm.generate(cond, negative="empty_text", **kw)


def test_tiny_audioldm_seeding():
    kw = dict(audio_length_s=LEN_S, num_inference_steps=2, guidance_scale=2.5, seed=0)
    cond = torch.randn(1, 512, generator=torch.Generator().manual_seed(1))
    a = A.AudioLDMGenerator.load("tiny-random", seed=0).generate(cond, **kw)
    b = A.AudioLDMGenerator.load("tiny-random", seed=0).generate(cond, **kw)
    c = A.AudioLDMGenerator.load("tiny-random", seed=1).generate(cond, **kw)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4


def test_audioldm_directory_and_quiet_deprecation(tiny_ldm, tmp_path):
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    h = Keep(level=logging.DEBUG)
    lg = logging.getLogger("diffusers.pipelines.pipeline_utils")
    lg.addHandler(h)
    try:
        d = tmp_path / "ldm"
        tiny_ldm.pipe.save_pretrained(d)
        loaded = A.AudioLDMGenerator.load(str(d))
    finally:
        lg.removeHandler(h)
    assert not any("deprecated" in r.getMessage() for r in records)
    assert loaded.is_random is False and loaded.conditioning_dim == 512 and str(d.resolve()) in loaded.identity
    cond = torch.randn(2, 512, generator=torch.Generator().manual_seed(2))
    kw = dict(audio_length_s=LEN_S, num_inference_steps=2, guidance_scale=2.5, seed=4)
    np.testing.assert_allclose(loaded.generate(cond, **kw), tiny_ldm.generate(cond, **kw), atol=1e-5)
    with pytest.raises(FileNotFoundError):
        A.AudioLDMGenerator.load(str(tmp_path / "missing"))

"""laion-clap ``.pt`` files without laion-clap: chanmusic.audio.clap_convert (renaming into transformers' CLAP).

The test marked ``laion`` checks the conversion against laion-clap's own model (it needs the ``[laion]`` extra:
``make test-laion``); the others run on the default install, with a tiny CLAP written in laion-clap's key layout.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import chanmusic.audio as A
import chanmusic.audio.clap as clap_mod
from chanmusic.audio.clap_convert import LAION_AUDIO_CFG, convert, feature_extractor, laion_to_transformers
from chanmusic.audio.clap_convert import main as clap_convert_main
from chanmusic.core.checkpoints import safe_load

HAS_LAION = clap_mod.laion_clap_installed()


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _clips(n: int = 3, seconds: float = 2.0, sr: int = 48000) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    return np.stack([0.4 * np.sin(2 * np.pi * 220.0 * (i + 1) * t) + 0.05 * rng.standard_normal(t.size)
                     for i in range(n)]).astype(np.float32)


# ------------------------------------------------------------------------- a tiny CLAP in laion-clap's layout

_TO_LAION = (
    ("audio_model.audio_encoder.", "audio_branch."), (".batch_norm.", ".bn0."),
    (".attention.output.dense.", ".attn.proj."), (".attention.self.relative_position_", ".attn.relative_position_"),
    (".intermediate.dense.", ".mlp.fc1."), (".output.dense.", ".mlp.fc2."),
    (".layernorm_before.", ".norm1."), (".layernorm_after.", ".norm2."),
    ("audio_projection.linear1.", "audio_projection.0."), ("audio_projection.linear2.", "audio_projection.2."),
)


def _laion_layout(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A transformers ClapAudioModelWithProjection's weights as a laion-clap file holds them (fused qkv, laion
    names, plus the parts laion-clap keeps that the embedding does not use)."""
    sd = model.state_dict()
    out = {}
    for k, v in sd.items():
        if ".attention.self.query." in k:
            kk = k.replace(".attention.self.query.", ".attention.self.key.")
            kv = k.replace(".attention.self.query.", ".attention.self.value.")
            new = k.replace(".attention.self.query.", ".attn.qkv.")
            for old, rep in _TO_LAION:
                new = new.replace(old, rep)
            out[new] = torch.cat([v, sd[kk], sd[kv]])
            continue
        if ".attention.self.key." in k or ".attention.self.value." in k:
            continue
        for old, rep in _TO_LAION:
            k = k.replace(old, rep)
        out[k] = v
    fe = feature_extractor()
    out["audio_branch.logmel_extractor.melW"] = torch.from_numpy(np.asarray(fe.mel_filters_slaney, np.float32))
    out["audio_branch.head.weight"] = torch.zeros(527, 4)       # AudioSet head: unused
    out["audio_branch.tscam_conv.weight"] = torch.zeros(527, 4, 3, 1)
    out["audio_transform.sequential.0.weight"] = torch.zeros(4, 4)
    out["logit_scale_a"] = torch.tensor(2.0)
    return out


@pytest.fixture(scope="module")
def tiny_laion(tmp_path_factory):
    """(path of a laion-clap-style .pt holding a tiny CLAP, the same CLAP as a transformers model)."""
    from transformers import ClapAudioConfig, ClapAudioModelWithProjection

    torch.manual_seed(3)
    cfg = ClapAudioConfig(hidden_size=128, patch_embeds_hidden_size=16, depths=[1, 2, 1, 1],
                          num_attention_heads=[1, 2, 2, 4], num_hidden_layers=4, projection_dim=512)
    model = ClapAudioModelWithProjection(cfg).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        model.audio_model.audio_encoder.batch_norm.running_mean.normal_()
        model.audio_model.audio_encoder.batch_norm.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("laion") / "tiny_laion.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in _laion_layout(model).items()}, "epoch": np.float64(3.0)}, path)  # a numpy scalar, as in official files
    return path, model


def _reference(model, clips: np.ndarray) -> torch.Tensor:
    """Embeddings by hand: laion's int16 quantisation, transformers' extractor with laion's mel settings."""
    q = [((np.clip(c, -1, 1) * 32767).astype(np.int16) / 32767).astype(np.float32) for c in clips]
    fe = feature_extractor()
    assert (fe.frequency_min, fe.frequency_max) == (LAION_AUDIO_CFG["fmin"], LAION_AUDIO_CFG["fmax"]) == (50, 14000)
    f = fe(q, sampling_rate=48000, truncation="rand_trunc", padding="repeatpad", return_tensors="pt")
    with torch.no_grad():
        e = model(input_features=f["input_features"], is_longer=f["is_longer"]).audio_embeds
    return torch.nn.functional.normalize(e, dim=-1)


def test_architecture_read_from_shapes(tiny_laion):
    path, model = tiny_laion
    sd = {k[len("module."):]: v for k, v in safe_load(path)["state_dict"].items()}
    cfg, mapped = laion_to_transformers(sd)
    assert cfg["depths"] == [1, 2, 1, 1] and cfg["num_attention_heads"] == [1, 2, 2, 4]
    assert (cfg["hidden_size"], cfg["patch_embeds_hidden_size"], cfg["window_size"]) == (128, 16, 8)
    assert set(mapped) == set(model.state_dict())


def test_pt_file_without_laion_clap(tiny_laion, monkeypatch, tmp_path):
    path, model = tiny_laion
    monkeypatch.setattr(clap_mod, "laion_clap_installed", lambda: False)
    clap = A.load_clap(str(path))
    assert "transformers" in clap.description and clap.identity.startswith("clap:laion-hf:")
    x = _clips()
    got = clap.embed(torch.from_numpy(x), 48000)
    torch.testing.assert_close(got, _reference(model, x), atol=1e-6, rtol=1e-5)

    # the one-off conversion: a transformers folder that loads like any other and embeds the same
    assert clap_convert_main([str(path), str(tmp_path / "conv")]) == 0
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= {p.name for p in (tmp_path / "conv").iterdir()}
    folder = A.load_clap(str(tmp_path / "conv"))
    # (a plain transformers folder: no int16 quantisation of the waveform, so not bit-equal)
    torch.testing.assert_close(folder.embed(torch.from_numpy(x), 48000), got, atol=2e-5, rtol=0)


def test_conversion_is_strict(tiny_laion, tmp_path, capsys):
    path, _ = tiny_laion
    sd = {k[len("module."):]: v for k, v in safe_load(path)["state_dict"].items()}

    def write(d, name):
        torch.save({"state_dict": d}, tmp_path / name)
        return tmp_path / name

    extra = dict(sd, **{"audio_branch.layers.0.blocks.0.attn.extra_scale": torch.ones(1)})
    with pytest.raises(ValueError, match=r"extra_scale"):
        convert(write(extra, "extra.pt"), tmp_path / "o1")
    missing = {k: v for k, v in sd.items() if k != "audio_branch.layers.0.blocks.0.mlp.fc2.bias"}
    with pytest.raises(ValueError, match=r"layers\.0\.blocks\.0\.output\.dense\.bias"):
        convert(write(missing, "missing.pt"), tmp_path / "o2")
    outside = dict(sd, **{"audio_projection.1.weight": torch.ones(1)})
    with pytest.raises(ValueError, match=r"unexpected laion-clap audio keys: audio_projection\.1\.weight"):
        convert(write(outside, "outside.pt"), tmp_path / "o3")
    other_mel = dict(sd, **{"audio_branch.logmel_extractor.melW": sd["audio_branch.logmel_extractor.melW"] * 1.1})
    with pytest.raises(ValueError, match="mel filter bank"):
        convert(write(other_mel, "mel.pt"), tmp_path / "o4")
    fused = dict(sd, **{"audio_branch.fusion_model.w": torch.ones(1)})
    with pytest.raises(ValueError, match="fusion"):
        convert(write(fused, "fused.pt"), tmp_path / "o5")
    assert clap_convert_main([str(tmp_path / "none.pt"), str(tmp_path / "o6")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chanmusic: error: ") and "none.pt" in err and len(err.splitlines()) == 1


# ------------------------------------------------------------------------- against laion-clap itself

@pytest.mark.laion
@pytest.mark.skipif(not HAS_LAION, reason="laion-clap not installed: the [laion] extra; `make test-laion` runs this")
def test_conversion_matches_laion_clap(tmp_path, monkeypatch):
    """laion-clap's HTSAT-tiny (random weights) read by laion-clap and by transformers give the same embeddings."""
    from chanmusic.audio.clap_laion import build_laion_clap

    torch.manual_seed(5)
    src, _ = build_laion_clap("HTSAT-tiny")
    path = tmp_path / "htsat_tiny.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, path)
    x = torch.from_numpy(_clips())
    by_laion = A.load_clap(str(path))
    assert by_laion.identity.startswith("clap:laion:")
    ref = by_laion.embed(x, 48000)
    monkeypatch.setattr(clap_mod, "laion_clap_installed", lambda: False)
    by_hf = A.load_clap(str(path))
    got = by_hf.embed(x, 48000)
    assert by_hf.identity.startswith("clap:laion-hf:")
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)  # measured: 7e-8
    # the mel front ends agree (laion computes it inside its model)
    w = torch.stack([torch.nn.functional.pad(c.repeat(480000 // c.numel()), (0, 480000 % c.numel()))
                     for c in torch.from_numpy(np.round(np.clip(_clips(), -1, 1) * 32767) / 32767).float()])
    with torch.no_grad():
        theirs = src.audio_branch.logmel_extractor(src.audio_branch.spectrogram_extractor(w))
    fe = feature_extractor()
    ours = fe([c.numpy() for c in w], sampling_rate=48000, truncation="rand_trunc", return_tensors="pt")
    assert (theirs - ours["input_features"]).abs().max() < 1e-3

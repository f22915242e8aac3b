"""encoders.braindecode_model (with braindecode_table, braindecode_features): every model of the table at a tiny
size — shapes, rates, units, channel masks (zero-fill vs removal), strict local weights, the listing error for unknown
models, the demo YAMLs. CPU."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from encoders.braindecode_features import luna_cross_attention, luna_features, luna_patch_embed
from encoders.braindecode_model import BraindecodeEncoder, window_zscore
from encoders.braindecode_table import MODELS, markdown_table, resolve
from chanmusic.core.electrodes import NMED_CH_NAMES
from chanmusic.core.checkpoints import CheckpointError

SFREQ, N_TIMES, C = 125.0, 250, 125
NAMES = list(NMED_CH_NAMES)
ROOT = Path(__file__).resolve().parents[1]
# tiny sizes; 19 electrodes (nearest to the 10-20 positions) except LUNA, which takes all 125 (it is cheap per patch)
TINY = {
    "REVE": dict(model_kwargs=dict(embed_dim=16, depth=1, heads=2, head_dim=8), channel_set="nearest"),
    "LUNA": dict(model_kwargs=dict(embed_dim=16, num_queries=2, depth=1, num_heads=2)),
    "EEGDINO": dict(model_kwargs=dict(n_layer=1, nhead=2, dim_feedforward=16,
                                      channels_kernel_stride_padding_norm=((4, 49, 25, 24, (2, 4)),))),
    "PBT": dict(model_kwargs=dict(embed_dim=16, num_layers=1, num_heads=2), channel_set="nearest"),
}
# 2-s windows at 125 Hz -> (samples at the model rate after pad, patches, channels, tokens)
EXPECTED = {
    "REVE": (560, 3, 19, 57),   # 400 samples at 200 Hz; 200-sample patches every 180 -> 200 + 2·180
    "LUNA": (520, 13, 125, 13),  # 512 at 256 Hz -> 13 patches of 40; one token per patch
    "EEGDINO": (400, 2, 19, 38),
    "PBT": (512, 8, 19, 152),   # 500 at 250 Hz -> 8 patches of 64
}
YAMLS = {"REVE": "reve.yaml", "LUNA": "luna.yaml", "EEGDINO": "eeg_dino.yaml", "PBT": "pbt.yaml"}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def build(name: str, **kw) -> BraindecodeEncoder:
    torch.manual_seed(0)
    return BraindecodeEncoder(C, SFREQ, N_TIMES, NAMES, model=name, **{**TINY[name], **kw}).eval()


def _mask(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(3, C, generator=g) > 0.3
    m[2] = True
    return m


def test_table_has_every_fact_with_a_source():
    assert {"REVE", "LUNA", "EEGDINO", "PBT"} <= set(MODELS)
    for spec in MODELS.values():
        assert spec.model_class.__name__ == spec.cls  # exported by braindecode 1.8.1
        assert {"rate", "units", "patch", "tokens", "head", "channels", "weights"} <= set(spec.sources), spec.cls
        assert spec.mask in ("zero-fill", "remove") and spec.layout in ("channel_major", "patch")
    assert resolve("EEG-DINO").cls == "EEGDINO" and resolve("braindecode.models.REVE").cls == "REVE"
    assert resolve("braindecode.models.luna.LUNA").cls == "LUNA" and resolve("pbt").cls == "PBT"
    assert "| REVE | 200 Hz |" in markdown_table()
    assert markdown_table() in (ROOT / "docs" / "encoders.md").read_text(), "regenerate docs/encoders.md's table"


@pytest.mark.parametrize("model", ["Labram", "braindecode.models.Deep4Net", "NoSuchNet", "nosuch.module.Net"])
def test_unknown_model_lists_the_table(model):
    with pytest.raises(ValueError) as e:
        BraindecodeEncoder(C, SFREQ, N_TIMES, NAMES, model=model)
    assert all(name in str(e.value) for name in MODELS), str(e.value)


@pytest.mark.parametrize("name", list(TINY))
def test_output_shapes_rates_and_tokens(name):
    enc = build(name)
    times, patches, n_ch, n_tok = EXPECTED[name]
    assert (enc.model_times, enc.n_patches, enc.n_model_channels, enc.n_tokens) == (times, patches, n_ch, n_tok)
    assert enc.model_sfreq == MODELS[name].sfreq
    x = torch.randn(3, C, N_TIMES)
    out = enc(x, _mask())
    assert out.pooled.shape == (3, enc.embed_dim)
    assert out.tokens.shape == (3, n_tok, enc.embed_dim)
    assert out.token_time.shape == (n_tok,) and int(out.token_time.max()) == patches - 1
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()
    if MODELS[name].layout == "channel_major":
        assert out.token_mask.shape == (3, n_tok)
        present = _mask().index_select(1, enc.channel_index)
        assert torch.equal(out.token_mask, present.repeat_interleave(patches, 1))
        w = out.token_mask[..., None].float()
        torch.testing.assert_close(out.pooled, (out.tokens * w).sum(1) / w.sum(1))
    else:
        assert out.token_mask is None
    # no classification head left in the model
    assert not any(isinstance(m, nn.Linear) and m.out_features == 1 for m in enc.model.modules())


@pytest.mark.parametrize("name", list(TINY))
def test_masked_channel_values_do_not_change_the_output(name):
    enc = build(name)
    x, m = torch.randn(3, C, N_TIMES), _mask()
    x2 = x.clone()
    x2[~m] = 1e4 * torch.randn(int((~m).sum()), N_TIMES)
    a, b = enc(x, m), enc(x2, m)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.pooled, b.pooled)
    # and the mask matters at all
    assert not torch.allclose(a.pooled[0], enc(x, None).pooled[0])


@pytest.mark.parametrize("name", [n for n in TINY if MODELS[n].mask == "zero-fill"])
def test_zero_fill_models_get_zeros_for_absent_channels(name):
    enc = build(name)
    m = _mask()
    x, present = enc.prepare(torch.randn(3, C, N_TIMES), m)
    assert torch.equal(present, m.index_select(1, enc.channel_index))
    assert (x[~present] == 0).all() and (x[present].abs().sum(-1) > 0).all()


def test_luna_removes_absent_channels():
    """LUNA's mask = running it on the present electrodes only (per sample), not zero-filling."""
    enc = build("LUNA")
    m = _mask()
    x, present = enc.prepare(torch.randn(3, C, N_TIMES), m)
    out = enc.encode(x, present)[0]
    with torch.no_grad():
        for b in range(3):
            keep = present[b]
            alone = luna_features(enc.model, x[b:b + 1, keep], enc.positions[keep], None)
            torch.testing.assert_close(out[b:b + 1], alone, atol=1e-5, rtol=1e-5)
        zero_filled = luna_features(enc.model, x, enc.positions, None)
    assert not torch.allclose(out[0], zero_filled[0], atol=1e-4)  # removal differs from zero-fill


def test_luna_masked_path_matches_braindecode_when_all_present():
    enc = build("LUNA")
    _randomise(enc.model, 3)
    t = torch.randn(6, 7, 16)
    ref = enc.model.cross_attn(t)[0]
    torch.testing.assert_close(luna_cross_attention(enc.model.cross_attn, t, None), ref)
    x, _ = enc.prepare(torch.randn(2, C, N_TIMES))
    rows = torch.ones(2, C * enc.n_patches, dtype=torch.bool)
    torch.testing.assert_close(luna_patch_embed(enc.model.patch_embed, x, rows), enc.model.patch_embed(x),
                               atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        full = luna_features(enc.model, x, enc.positions, None)
        torch.testing.assert_close(luna_features(enc.model, x, enc.positions, torch.ones(2, C, dtype=torch.bool)),
                                   full, atol=1e-4, rtol=1e-4)
        none = luna_features(enc.model, x, enc.positions, torch.zeros(2, C, dtype=torch.bool))
    assert torch.isfinite(none).all()


def test_units_clip_and_zscore():
    x = torch.randn(2, C, N_TIMES) * 3 + 1
    # EEG-DINO: µV / 100; z-scored input reads 1 σ as zscore_uv µV
    assert build("EEGDINO", input_units="uV").scale == pytest.approx(0.01)
    assert build("EEGDINO", zscore_uv=20.0).scale == pytest.approx(0.2)
    # REVE: our z-scored data pass as is, clipped at ±15; µV data are z-scored per window
    reve = build("REVE")
    assert not reve.window_zscore and reve.scale == 1.0 and reve.clip == 15.0
    assert reve.prepare(x * 100)[0].abs().max() == 15.0
    assert build("REVE", input_units="uV").window_zscore
    # LUNA: always per-window z-score (official preprocessing)
    assert build("LUNA").window_zscore and build("LUNA", input_units="uV").window_zscore
    z = window_zscore(x)
    torch.testing.assert_close(z.mean(-1), torch.zeros(2, C), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(-1, unbiased=False), torch.ones(2, C), atol=1e-4, rtol=0)
    # a z-scored model's input does not depend on the physical scale
    luna = build("LUNA", input_units="uV")
    torch.testing.assert_close(luna.prepare(x)[0], luna.prepare(x * 1e3)[0], atol=1e-4, rtol=1e-4)


def test_readout_cls_and_bad_arguments():
    for name in ("EEGDINO", "PBT"):
        enc = build(name, readout="cls")
        out = enc(torch.randn(2, C, N_TIMES))
        assert not torch.allclose(out.pooled, out.tokens.mean(1))
    with pytest.raises(ValueError, match="readout"):
        build("REVE", readout="cls")
    with pytest.raises(ValueError, match="at most 19 channels"):
        build("EEGDINO", channel_set="all")
    with pytest.raises(ValueError, match="must not set"):
        build("PBT", model_kwargs=dict(n_chans=3))


def test_pbt_hook_is_removed_after_forward():
    enc = build("PBT")
    enc(torch.randn(1, C, N_TIMES))
    assert len(enc.model.transformer_encoder._forward_hooks) == 0


def _randomise(module: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05 + (1.0 if p.dim() == 1 else 0.0))


def _official_state(name: str, enc: BraindecodeEncoder) -> dict[str, torch.Tensor]:
    """A checkpoint as released: braindecode's names except the class's own renames (``mapping``), plus the
    keys the encoder does not use (pretraining decoders, heads), which must be dropped by name."""
    inverse = {v: k for k, v in (enc.model.mapping or {}).items()}
    sd = {inverse.get(k, k): v.clone() for k, v in enc.model.state_dict().items()}
    sd["final_layer.weight"] = torch.randn(4, 8)
    if name == "LUNA":
        sd["decoder_head.norm.weight"] = torch.randn(8)
        sd["channel_emb.embeddings.weight"] = torch.randn(90, 8)
    if name == "REVE":
        sd["cls_query_token"] = torch.randn(1, 1, 16)
    return sd


@pytest.mark.filterwarnings("ignore:REVE. pretrained weights without positions_file")
@pytest.mark.parametrize("name", list(TINY))
def test_local_weights_load_strictly(name, tmp_path):
    src = build(name)
    _randomise(src.model, 1)
    sd = _official_state(name, src)
    if name == "LUNA":
        from safetensors.torch import save_file

        path = tmp_path / "LUNA_base.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        path = tmp_path / "weights.ckpt"
        torch.save({"state_dict": {"model." + k: v for k, v in sd.items()}, "epoch": 3}, path)
    kw = {} if name == "LUNA" else {"pretrained_prefix": "model."}
    dst = build(name, init_from=str(path), **kw)
    x, m = torch.randn(2, C, N_TIMES), _mask()[:2]
    with torch.no_grad():
        torch.testing.assert_close(dst(x, m).tokens, src(x, m).tokens)
        assert not torch.allclose(build(name)(x, m).tokens, src(x, m).tokens)

    # a wrong key fails naming it (both the unknown name and the key the model then misses)
    key = next(k for k in sd if not k.startswith(("final_layer", "decoder_head", "channel_emb", "cls_query")))
    bad = dict(sd)
    bad[key + "_renamed"] = bad.pop(key)
    path2 = tmp_path / "bad.ckpt"
    torch.save(bad, path2)
    with pytest.raises(CheckpointError) as e:
        build(name, init_from=str(path2))
    assert key + "_renamed" in str(e.value) and key in str(e.value).replace(key + "_renamed", "")


def test_arbitrary_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"cls_token": _Evil()}}, path)  # an object where a tensor should be
    with pytest.raises(CheckpointError, match="refused to load"):
        build("PBT", init_from=str(path))


class _Evil:
    pass


def test_reve_positions_file_registers_the_montage(tmp_path):
    """With REVE's position bank, electrodes are mapped into the bank's frame by a similarity fit."""
    from scipy.spatial.transform import Rotation

    from encoders.channel_mapping import electrode_unit_positions

    names = ["Fp1", "Fp2", "Fz", "Cz", "Pz", "Oz", "C3", "C4", "T7", "T8", "O1", "O2", "F7", "F8", "P7", "P8"]
    u = electrode_unit_positions(names, "standard_1005")
    rot = Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix()
    bank = {n: (0.09 * rot @ p + np.array([0.0, 0.02, 0.04])).tolist() for n, p in zip(names, u)}
    path = tmp_path / "reve_positions.json"
    path.write_text(json.dumps(bank))
    enc = build("REVE", positions_file=str(path))
    cz = enc.model_ch_names.index("Cz")
    np.testing.assert_allclose(enc.positions[cz].numpy(), bank["Cz"], atol=0.01)
    assert enc.positions.shape == (19, 3)


@pytest.mark.parametrize("name", list(YAMLS))
def test_demo_yaml_builds_the_encoder(name):
    cfg = yaml.safe_load((ROOT / "experiments" / "encoders" / YAMLS[name]).read_text())
    enc_cfg = cfg["model"]["init_args"]["encoder"]
    assert enc_cfg["class_path"] == "encoders.braindecode_model.BraindecodeEncoder"
    enc = BraindecodeEncoder(C, SFREQ, N_TIMES, NAMES, **enc_cfg["init_args"])
    assert resolve(enc_cfg["init_args"]["model"]).cls == name
    assert enc(torch.randn(2, C, N_TIMES)).pooled.shape == (2, enc.embed_dim)

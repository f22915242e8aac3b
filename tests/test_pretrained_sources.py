"""``init_from:`` (published weights) from everywhere users keep weights (encoders.pretrained_sources): braindecode folders written by
braindecode's own ``save_pretrained``, the same folder as a hub id in the Hugging Face cache (``HF_HUB_OFFLINE=1``),
strict keys on every path (where braindecode's ``from_pretrained`` drops mismatched keys silently), and the
architecture in ``config.json`` checked. Tiny models, CPU; the official-file layouts are in test_baselines.py.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from encoders.braindecode_model import BraindecodeEncoder
from encoders.cbramod import CBraModEncoder
from encoders.pretrained_sources import resolve_pretrained
from chanmusic.core.checkpoints import CheckpointError
from tooling.tiny_foundation import C, N_TIMES, NAMES, SFREQ, TINY, build  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def braindecode_model(name: str, enc, n_outputs: int = 2, **overrides) -> nn.Module:
    """The braindecode class a user would have saved: our encoder's size and input shape, *with* its classification
    head (``n_outputs``) and braindecode's own defaults elsewhere, random weights everywhere."""
    from braindecode.models import EEGPT, CBraMod, Labram

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "labram":
            kw = dict(n_times=enc.model_times, n_outputs=n_outputs, n_chans=enc.n_model_channels, sfreq=200,
                      embed_dim=100, conv_out_channels=4, num_layers=1, num_heads=4, qk_norm=nn.LayerNorm)
            model = Labram(**{**kw, **overrides})
        elif name == "eegpt":  # braindecode's defaults: overlapping patches, a channel projection
            kw = dict(n_outputs=n_outputs, n_chans=enc.n_model_channels,
                      chs_info=[{"ch_name": n} for n in enc.model_ch_names], n_times=enc.model_times, sfreq=256,
                      embed_num=2, embed_dim=32, depth=1, num_heads=4)
            model = EEGPT(**{**kw, **overrides})
        else:
            kw = dict(n_outputs=n_outputs, n_chans=enc.n_model_channels, n_times=enc.model_times, sfreq=200,
                      n_layer=1, nhead=4, dim_feedforward=64)
            model = CBraMod(**{**kw, **overrides})
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05 + (1.0 if p.dim() == 1 else 0.0))
    return model.eval()


def save_folder(model: nn.Module, folder: Path) -> Path:
    """braindecode's own writer: config.json + model.safetensors + pytorch_model.bin."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(folder)
    assert {"config.json", "model.safetensors", "pytorch_model.bin"} <= {p.name for p in folder.iterdir()}
    return folder


def reference_tokens(name: str, model: nn.Module, enc, x: torch.Tensor) -> torch.Tensor:
    """braindecode's own forward on the model input our adapter prepared."""
    with torch.no_grad():
        if name == "labram":
            return model(x, return_features=True, ch_names=enc.model_ch_names)["features"]
        model.proj_out = nn.Identity()
        return model(x, return_features=True)["features"].flatten(1, 2)


@pytest.mark.parametrize("name", ["labram", "cbramod"])
def test_braindecode_folder_loads_strictly_and_matches_braindecode(name, tmp_path):
    enc = build(name)
    saved = braindecode_model(name, enc)
    folder = save_folder(saved, tmp_path / "bd")
    loaded = build(name, init_from=str(folder)).eval()
    eeg = torch.randn(2, C, N_TIMES)
    with torch.no_grad():
        x, _ = loaded.prepare(eeg)
        ours = loaded(eeg).tokens
    theirs = reference_tokens(name, saved, loaded, x)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    # pytorch_model.bin alone (the other file save_pretrained writes) gives the same weights
    (folder / "model.safetensors").unlink()
    again = build(name, init_from=str(folder))
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k


def test_eegpt_braindecode_folder(tmp_path):
    """braindecode's default EEGPT (channel projection, overlapping patches, head): the encoder weights load; the
    projection, head and channel-id buffer are dropped; every target_encoder tensor is the saved one."""
    enc = build("eegpt")
    saved = braindecode_model("eegpt", enc)
    assert any(k.startswith("chan_proj.") for k in saved.state_dict())
    folder = save_folder(saved, tmp_path / "bd")
    loaded = build("eegpt", init_from=str(folder))
    file = load_file(str(folder / "model.safetensors"))
    ours = loaded.model.target_encoder.state_dict()
    assert set(ours) == {k[len("target_encoder."):] for k in file if k.startswith("target_encoder.")}
    for k, v in ours.items():
        assert torch.equal(v, file["target_encoder." + k]), k


def test_eegpt_braindecode_folder_without_channel_projection(tmp_path):
    """A braindecode EEGPT on all 125 channels (no projection) grows its channel table to 125 rows; the 62 named
    rows load, and the encoder's output equals braindecode's own forward."""
    enc = build("eegpt")
    saved = braindecode_model("eegpt", enc, chan_proj_type="none", patch_stride=None)
    assert saved.target_encoder.chan_embed.num_embeddings == enc.n_model_channels > 62
    loaded = build("eegpt", init_from=str(save_folder(saved, tmp_path / "bd"))).eval()
    eeg = torch.randn(2, C, N_TIMES)
    with torch.no_grad():
        x, _ = loaded.prepare(eeg)
        ours = loaded(eeg).tokens
        theirs = saved(x, return_features=True)["features"]
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_labram_longer_saved_window_is_sliced(tmp_path):
    enc = build("labram")  # 2 patches
    saved = braindecode_model("labram", enc, n_times=1600)  # a braindecode Labram for 8-s windows: 9 time rows
    folder = save_folder(saved, tmp_path / "bd")
    loaded = build("labram", init_from=str(folder))
    te = saved.state_dict()["temporal_embedding"]
    assert te.shape[1] == 9
    assert torch.equal(loaded.model.temporal_embedding, te[:, : enc.n_patches + 1])


@pytest.mark.parametrize("name", ["labram", "eegpt", "cbramod"])
def test_braindecode_folder_renamed_key_fails_where_from_pretrained_is_silent(name, tmp_path):
    enc = build(name)
    folder = save_folder(braindecode_model(name, enc), tmp_path / "bd")
    sd = load_file(str(folder / "model.safetensors"))
    victim = {"labram": "blocks.0.attn.qkv.weight", "eegpt": "target_encoder.blocks.0.mlp.fc1.weight",
              "cbramod": "encoder.layers.0.linear1.weight"}[name]
    sd[victim + "_renamed"] = sd.pop(victim)
    save_file(sd, str(folder / "model.safetensors"))
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(CheckpointError) as err:
        build(name, init_from=str(folder))
    msg = str(err.value)
    assert victim.split("target_encoder.")[-1] in msg and victim + "_renamed" in msg
    assert "missing" in msg and "unexpected" in msg
    # braindecode's own loader takes the same folder without a word: the renamed weight stays random
    cls = type(braindecode_model(name, enc))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = cls.from_pretrained(str(folder))
    assert not torch.equal(theirs.state_dict()[victim], sd[victim + "_renamed"])


def test_config_with_another_architecture_is_refused(tmp_path):
    """num_heads changes no tensor shape: only config.json can tell, and it is checked."""
    enc = build("labram")
    folder = save_folder(braindecode_model("labram", enc, num_heads=2), tmp_path / "bd")
    with pytest.raises(CheckpointError, match=r"num_heads=2 \(this encoder: 4\)"):
        build("labram", init_from=str(folder))


def test_unusable_sources_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(CheckpointError, match=r"not a braindecode folder .*notes\.txt"):
        build("cbramod", init_from=str(tmp_path / "empty"))
    with pytest.raises(CheckpointError, match="not found"):
        build("cbramod", init_from=str(tmp_path / "absent.pth"))
    with pytest.raises(CheckpointError, match="not found"):
        resolve_pretrained("no/such/nested/path")
    bad = tmp_path / "badcfg"
    bad.mkdir()
    save_file({"w": torch.zeros(1)}, str(bad / "model.safetensors"))
    (bad / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable config.json"):
        resolve_pretrained(str(bad))


def test_generic_braindecode_encoder_folder(tmp_path):
    """The table's models (here PBT) take a braindecode folder too, config checked, head dropped."""
    from braindecode.models.util import build_model_config

    kw = dict(model="PBT", model_kwargs=dict(embed_dim=16, num_layers=1, num_heads=2), channel_set="nearest")
    torch.manual_seed(0)
    enc = BraindecodeEncoder(C, SFREQ, N_TIMES, NAMES, **kw)
    cfg = build_model_config(enc.model)
    cfg["n_outputs"] = 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        user = type(enc.model).from_config(cfg)  # the class as saved by a user: with its head
    folder = save_folder(user, tmp_path / "pbt")
    loaded = BraindecodeEncoder(C, SFREQ, N_TIMES, NAMES, init_from=str(folder), **kw)
    saved = load_file(str(folder / "model.safetensors"))
    own = loaded.model.state_dict()
    assert all(torch.equal(own[k], saved[k]) for k in own)
    assert any(k not in own for k in saved)  # the head was there, and dropped
    cfg["num_heads"] = 4
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="num_heads=4"):
        BraindecodeEncoder(C, SFREQ, N_TIMES, NAMES, init_from=str(folder), **kw)


def test_hub_id_from_the_hf_cache_offline(tmp_path):
    """A hub id read from the Hugging Face cache layout with HF_HUB_OFFLINE=1 (no network), in a fresh process so
    huggingface_hub reads the environment as a user's would."""
    enc = build("cbramod")
    folder = save_folder(braindecode_model("cbramod", enc), tmp_path / "bd")
    cache = tmp_path / "hf"
    rev = "0123456789abcdef0123456789abcdef01234567"
    snap = cache / "models--someone--tiny-cbramod" / "snapshots" / rev
    snap.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(folder / f, snap / f)
    (cache / "models--someone--tiny-cbramod" / "refs").mkdir()
    (cache / "models--someone--tiny-cbramod" / "refs" / "main").write_text(rev)
    code = textwrap.dedent(f"""
        import torch
        from safetensors.torch import load_file
        from encoders.cbramod import CBraModEncoder
        from chanmusic.core.electrodes import NMED_CH_NAMES
        from chanmusic.core.checkpoints import CheckpointError
        kw = dict(n_layer=1, nhead=4, dim_feedforward=64)
        enc = CBraModEncoder({C}, {SFREQ}, {N_TIMES}, list(NMED_CH_NAMES), init_from="someone/tiny-cbramod", **kw)
        saved = load_file("{folder / 'model.safetensors'}")
        assert all(torch.equal(v, saved[k]) for k, v in enc.model.state_dict().items())
        try:
            CBraModEncoder({C}, {SFREQ}, {N_TIMES}, list(NMED_CH_NAMES), init_from="someone/not-cached", **kw)
        except CheckpointError as e:
            print("REFUSED", e)
        print("OK")
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith("OK")
    assert "REFUSED init_from: 'someone/not-cached'" in r.stdout and "offline" in r.stdout


class _Payload:
    """Unpickling this runs code (creates ``marker``), as a hostile or merely careless pickle could."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_eegpt_full_lightning_save_loads_its_weights_and_runs_nothing(tmp_path):
    """The official EEGPT release is a whole Lightning save written by torch 2.0: optimizer state and an LR scheduler
    whose state pickles a bound method (so the scheduler and its optimizer objects). weights_only=True refuses such a
    file; the allow-listed reader takes the weights and builds none of those objects."""
    import pickle

    from torch.optim.lr_scheduler import OneCycleLR

    enc = build("eegpt")
    ref = braindecode_model("eegpt", enc, chan_proj_type="none", patch_stride=None)
    target = {k: v for k, v in ref.target_encoder.state_dict().items()}
    target["chan_embed.weight"] = target["chan_embed.weight"][:62]  # the official table: 62 names
    sd = {"target_encoder." + k: v for k, v in target.items()}
    sd.update({"encoder." + k: v + 1 for k, v in target.items()})  # LitEEGPT's online encoder etc.: dropped
    sd["predictor.mask_token"] = torch.randn(1, 1, 32)
    params = [nn.Parameter(torch.randn(4))]
    opt = torch.optim.AdamW(params, lr=1e-3)
    sched = OneCycleLR(opt, max_lr=1e-3, total_steps=100)
    sched_state = sched.state_dict()
    sched_state["anneal_func"] = sched.get_lr  # torch 2.0 kept a bound method here: pickles the scheduler object
    marker = tmp_path / "ran_code"
    sched_state["payload"] = _Payload(marker)
    ckpt = {"epoch": 199, "global_step": 40000, "pytorch-lightning_version": "1.9.5", "state_dict": sd,
            "optimizer_states": [opt.state_dict()], "lr_schedulers": [sched_state],
            "loops": {"fit_loop": {"state_dict": {}}}, "callbacks": {"ModelCheckpoint": {"best_model_score": None}}}
    path = tmp_path / "eegpt_mcae_58chs_4s_large4E.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)

    loaded = build("eegpt", init_from=str(path))
    for k, v in loaded.model.target_encoder.state_dict().items():
        assert torch.equal(v, target[k]), k
    assert not marker.exists(), "loading ran code from the checkpoint"
    # control: the payload is live, so the check above means something
    torch.load(path, weights_only=False)
    assert marker.exists()

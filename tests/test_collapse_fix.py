"""The collapse fix of docs/encoders.md ("Why EEGPT and CBraMod collapsed"): the ``weighted`` head (signed
per-position pooling over present tokens) and EEG2Mel's BatchNorm momentum. CPU, demo sizes, a few seconds."""
from __future__ import annotations

import pytest
import torch
import yaml

from chanmusic.evaluation.collapse import COLLAPSE_SPREAD, embedding_spread
from chanmusic.modules.heads import WeightedPoolHead, build_head
from chanmusic.stages.align import AlignModule
from encoders.base import EncoderOutput
from encoders.cbramod import CBraModEncoder
from encoders.eeg2mel import EEG2Mel
from encoders.eegpt import EEGPTEncoder
from chanmusic.core.electrodes import NMED_CH_NAMES

SFREQ, N_TIMES, C = 125.0, 250, 125


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _out(tokens: torch.Tensor, mask: torch.Tensor | None) -> EncoderOutput:
    return EncoderOutput(tokens.mean(1), tokens, torch.arange(tokens.shape[1]), None, mask)


def test_weighted_head_reads_present_tokens_only_and_equals_physical_absence():
    torch.manual_seed(0)
    head = WeightedPoolHead(8, 16, n_tokens=6, n_maps=3).eval()
    x = torch.randn(2, 6, 8)
    mask = torch.tensor([[1, 1, 0, 1, 0, 1], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    y = head(_out(x, mask))
    poisoned = x.clone()
    poisoned[0, [2, 4]] = float("nan")  # what an absent token holds is never read
    assert torch.equal(head(_out(poisoned, mask)), y)
    # physical absence: a head over the 4 present positions, with those positions' weights
    kept = mask[0].nonzero().squeeze(1)
    small = WeightedPoolHead(8, 16, n_tokens=4, n_maps=3).eval()
    small.load_state_dict({**head.state_dict(), "weight": head.weight[:, kept]})
    assert torch.allclose(small(_out(x[:1, kept], None)), y[:1], atol=1e-6)
    # by hand: y_k = sum_present a_kn LN(x_n) / sqrt(|present|) -> Linear, LayerNorm
    v = torch.nn.functional.layer_norm(x[1], (8,), head.norm.weight, head.norm.bias)
    assert torch.allclose(head.out((head.weight @ v / 6 ** 0.5).flatten()), y[1], atol=1e-5)
    # signed maps: the same content at every position sums to (sum_n a_kn) x, not to a mean
    assert head.weight.min() < 0 < head.weight.max()


def test_weighted_head_needs_a_token_grid():
    with pytest.raises(ValueError, match="n_tokens"):
        build_head("weighted", 8, 16, n_tokens=None)
    assert build_head("weighted", 8, 16, readout="cls+tokens", n_tokens=5).weight.shape == (8, 6)
    with pytest.raises(ValueError, match="token positions"):
        build_head("weighted", 8, 16, n_tokens=5)(_out(torch.randn(1, 4, 8), None))


def _songs(n: int, seed: int, n_songs: int = 6) -> dict[str, torch.Tensor]:
    """A song's waveform on every electrode with a random sign per electrode (a shared mean cancels it),
    in unit noise; the target is the song's random 512-d 'CLAP' vector."""
    fixed = torch.Generator().manual_seed(99)
    wave = torch.randn(n_songs, N_TIMES, generator=fixed).cumsum(-1)
    wave = (wave - wave.mean(-1, keepdim=True)) / wave.std(-1, keepdim=True)
    sign = torch.randn(C, generator=fixed).sign()
    clap = torch.randn(n_songs, 512, generator=fixed)
    g = torch.Generator().manual_seed(seed)
    song = torch.arange(n) % n_songs
    eeg = torch.randn(n, C, N_TIMES, generator=g) + 0.5 * sign[:, None] * wave[song][:, None, :]
    return {"eeg": eeg, "clap": clap[song], "music": song, "channel_mask": torch.ones(n, C, dtype=torch.bool)}


def _trained_spread(name: str, head: str | None = None, steps: int = 20) -> float:
    """The demo-size encoder (experiments/encoders/<name>.yaml) with its recipe (<name>_recipe.yaml: head, learning
    rates, encoder settings), trained ``steps`` steps; the spread of its test embeddings."""
    torch.manual_seed(0)
    recipe = yaml.safe_load(open(f"experiments/encoders/{name}_recipe.yaml"))["model"]["init_args"]
    demo = yaml.safe_load(open(f"experiments/encoders/{name}.yaml"))["model"]["init_args"]["encoder"]["init_args"]
    kw = {k: v for k, v in {**demo, **recipe["encoder"]["init_args"]}.items() if k != "init_from"}
    enc = {"eegpt": EEGPTEncoder, "cbramod": CBraModEncoder}[name](C, SFREQ, N_TIMES, list(NMED_CH_NAMES), **kw)
    m = AlignModule(enc, head=head or recipe["head"], head_queries=recipe["head_queries"])
    lr = recipe["recipe"].get("encoder_lr") or recipe["lr"], recipe["recipe"].get("head_lr") or recipe["lr"]
    opt = torch.optim.AdamW([{"params": m.encoder.parameters(), "lr": lr[0]},
                             {"params": [*m.head.parameters(), m.aligned.logit_scale], "lr": lr[1]}],
                            weight_decay=recipe["weight_decay"])
    for step in range(steps):
        loss, _, _ = m._step(_songs(24, step), train=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        b = _songs(36, 1000)
        return embedding_spread(m.embed(b["eeg"], b["channel_mask"]))["spread"]


def test_eegpt_recipe_head_learns_where_the_old_attention_head_collapsed():
    assert yaml.safe_load(open("experiments/encoders/eegpt_recipe.yaml"))["model"]["init_args"]["head"] == "weighted"
    assert _trained_spread("eegpt") > 10 * COLLAPSE_SPREAD
    assert _trained_spread("eegpt", head="attention") < COLLAPSE_SPREAD  # the head the recipe had


def test_cbramod_recipe_head_is_not_collapsed():
    assert _trained_spread("cbramod") > 10 * COLLAPSE_SPREAD


def test_eeg2mel_bn_momentum_sets_every_running_average():
    keras = EEG2Mel(C, SFREQ, N_TIMES, base_filters=2)
    short = EEG2Mel(C, SFREQ, N_TIMES, base_filters=2, bn_momentum=0.1)
    bns = [m for m in short.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 8 and all(m.momentum == 0.1 for m in bns)
    assert all(m.momentum == 0.01 for m in keras.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    demo = yaml.safe_load(open("experiments/encoders/eeg2mel.yaml"))["model"]["init_args"]["encoder"]["init_args"]
    assert demo["bn_momentum"] == 0.1


def test_reconstruction_rebuilds_the_aligned_head_with_its_maps(tmp_path):
    """The reconstruction step loads the aligned head strictly: it must be rebuilt with the checkpoint's
    ``head_queries`` and ``readout`` (it used the defaults, and a 32-map head failed to load)."""
    from chanmusic.stages.reconstruct import ReconstructModule

    torch.manual_seed(0)
    enc = CBraModEncoder(C, SFREQ, N_TIMES, list(NMED_CH_NAMES), channel_set="nearest", n_layer=1, nhead=4,
                         dim_feedforward=64)
    aligned = AlignModule(enc, head="weighted", head_queries=3, readout="cls+tokens")
    path = tmp_path / "align.ckpt"
    torch.save({"state_dict": aligned.state_dict(), "hyper_parameters": dict(aligned.hparams)}, path)
    rec = ReconstructModule(CBraModEncoder(C, SFREQ, N_TIMES, list(NMED_CH_NAMES), channel_set="nearest", n_layer=1,
                                           nhead=4, dim_feedforward=64),
                            init_from=str(path), encoder_source="config")
    assert rec.head.readout == "cls+tokens" and rec.head.weight.shape == (3, enc.n_tokens + 1)
    assert torch.equal(rec.head.weight, aligned.head.weight)

"""laion-clap ``.pt`` files read by transformers' CLAP: no laion-clap (and no ``numpy<2``) needed.

A laion-clap checkpoint's audio tower (HTSAT) and transformers' ``ClapAudioModelWithProjection`` are the same network
under other names; only the mel front end differs in where it lives (laion-clap computes it inside the model,
transformers in ``ClapFeatureExtractor``). :func:`laion_to_transformers` renames the audio weights (and splits
HTSAT's fused ``qkv`` into query/key/value), reads the architecture from the tensors' shapes, and checks every key
both ways: an audio key it does not know, or a transformers weight left unfilled, is an error naming it. The
feature extractor gets laion-clap's mel settings (fmin 50 Hz, fmax 14 kHz); the file's own mel filter bank
(``logmel_extractor.melW``) is checked against it.

Measured against laion-clap 1.1.7 itself (random weights, 4 s clips; ``tests/test_clap_convert.py``): log-mel
features agree to 2e-4 dB, and the unit-norm embeddings to a max abs difference of 7e-8 (HTSAT-tiny) and 4e-8
(HTSAT-base), while different clips differ by ~0.05 in cosine.

Two uses: :func:`load_laion_as_transformers` (what :class:`chanmusic.audio.clap.ClapEmbedder` does with a ``.pt``
file when laion-clap is not installed) and the one-off conversion to a transformers folder::

    python -m chanmusic.audio.clap_convert music_audioset_epoch_15_esc_90.14.pt clap-music/

after which ``clap: clap-music/`` loads it like any transformers CLAP folder (without laion-clap's int16
quantisation of the waveform, which :func:`load_laion_as_transformers` keeps: embeddings differ by ~2e-6).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from chanmusic.audio._common import CLAP_PREP_VERSION, CLAP_SR, file_stamp

# laion-clap's audio_cfg for HTSAT-tiny and HTSAT-base (clap_module/model_configs/HTSAT-*.json): the mel front end
LAION_AUDIO_CFG = dict(sample_rate=48000, clip_samples=480000, mel_bins=64, window_size=1024, hop_size=480,
                       fmin=50, fmax=14000)

# laion audio keys the embedding never uses: the mel front end (transformers computes it in the feature
# extractor; melW is checked against it), the AudioSet classification head, the training-time transform,
# the contrastive temperature, and attention masks recomputed by the model
_UNUSED = re.compile(r"^(audio_branch\.(spectrogram_extractor\.|logmel_extractor\.|head\.|tscam_conv\.)|"
                     r"audio_transform\.|logit_scale_a$)|\.attn_mask$")
_RENAMES = (
    ("audio_branch.", "audio_model.audio_encoder."),
    (".bn0.", ".batch_norm."),
    (".attn.proj.", ".attention.output.dense."),
    (".attn.relative_position_", ".attention.self.relative_position_"),
    (".mlp.fc1.", ".intermediate.dense."),
    (".mlp.fc2.", ".output.dense."),
    (".norm1.", ".layernorm_before."),
    (".norm2.", ".layernorm_after."),
    ("audio_projection.0.", "audio_projection.linear1."),
    ("audio_projection.2.", "audio_projection.linear2."),
)


def _rename(key: str) -> str:
    for old, new in _RENAMES:
        key = key.replace(old, new)
    return key


def _need(sd: Mapping[str, torch.Tensor], key: str, source: str) -> torch.Tensor:
    if key not in sd:
        raise ValueError(f"{source}: CLAP audio weight {key!r} missing — not an unfused laion-clap HTSAT checkpoint")
    return sd[key]


def audio_config(sd: Mapping[str, torch.Tensor], source: str = "checkpoint") -> dict[str, Any]:
    """``ClapAudioConfig`` arguments of the HTSAT in the laion audio state dict ``sd``, read from its shapes."""
    proj = _need(sd, "audio_branch.patch_embed.proj.weight", source)  # [embed, 1, patch, patch]
    layers: dict[int, set[int]] = {}
    heads: dict[int, int] = {}
    window = None
    for k, v in sd.items():
        m = re.match(r"audio_branch\.layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table$", k)
        if m:
            i, b = int(m.group(1)), int(m.group(2))
            layers.setdefault(i, set()).add(b)
            heads[i] = int(v.shape[1])
            window = int(round((v.shape[0] ** 0.5 + 1) / 2))  # (2w-1)^2 rows
    if not layers or sorted(layers) != list(range(len(layers))):
        raise ValueError(f"{source}: no HTSAT layers found (audio_branch.layers.N.blocks.M...)")
    fc1 = _need(sd, "audio_branch.layers.0.blocks.0.mlp.fc1.weight", source)
    p2 = _need(sd, "audio_projection.2.weight", source)
    return dict(
        patch_embeds_hidden_size=int(proj.shape[0]), patch_size=int(proj.shape[-1]),
        patch_stride=[int(proj.shape[-2]), int(proj.shape[-1])],
        depths=[len(layers[i]) for i in sorted(layers)], num_attention_heads=[heads[i] for i in sorted(layers)],
        num_hidden_layers=len(layers), window_size=window,
        hidden_size=int(_need(sd, "audio_branch.norm.weight", source).shape[0]),
        num_mel_bins=int(_need(sd, "audio_branch.bn0.weight", source).shape[0]),
        mlp_ratio=float(fc1.shape[0]) / float(fc1.shape[1]), projection_dim=int(p2.shape[0]),
        enable_fusion=False, spec_size=256,
    )


def laion_to_transformers(sd: Mapping[str, torch.Tensor], source: str = "checkpoint"
                          ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A laion-clap audio state dict (keys under ``audio_branch`` / ``audio_projection`` / ...) -> the
    ``ClapAudioConfig`` arguments and the ``ClapAudioModelWithProjection`` state dict. Keys it does not know raise
    ``ValueError`` naming them (missing transformers weights are checked by :func:`build_transformers_clap`)."""
    fused = sorted(k for k in sd if ".fusion_model." in k or ".mel_conv" in k)
    if fused:
        raise ValueError(f"{source}: a fusion CLAP checkpoint (e.g. key {fused[0]!r}); only unfused laion-clap "
                         f"checkpoints are supported")
    cfg = audio_config(sd, source)
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for k, v in sd.items():
        if _UNUSED.search(k):
            continue
        if ".attn.qkv." in k:
            base = _rename(k.replace(".attn.qkv.", ".attn.QKV."))
            for name, part in zip(("query", "key", "value"), v.chunk(3, dim=0)):
                out[base.replace(".attn.QKV.", f".attention.self.{name}.")] = part.clone()
            continue
        new = _rename(k)
        if new == k:
            unknown.append(k)
            continue
        out[new] = v
    if unknown:
        raise ValueError(f"{source}: unexpected laion-clap audio keys: {', '.join(sorted(unknown)[:8])}"
                         + (f" ... ({len(unknown)} in all)" if len(unknown) > 8 else ""))
    return cfg, out


def feature_extractor(sd: Mapping[str, torch.Tensor] | None = None, source: str = "checkpoint"):
    """transformers' ``ClapFeatureExtractor`` with laion-clap's mel settings; if ``sd`` holds laion's own mel filter
    bank (``audio_branch.logmel_extractor.melW``), it must equal the extractor's (else ``ValueError``)."""
    from transformers import ClapFeatureExtractor

    c = LAION_AUDIO_CFG
    fe = ClapFeatureExtractor(feature_size=c["mel_bins"], sampling_rate=c["sample_rate"], hop_length=c["hop_size"],
                              max_length_s=c["clip_samples"] // c["sample_rate"], fft_window_size=c["window_size"],
                              frequency_min=c["fmin"], frequency_max=c["fmax"], truncation="rand_trunc",
                              padding="repeatpad")
    mel = None if sd is None else sd.get("audio_branch.logmel_extractor.melW")
    if mel is not None:
        ours = np.asarray(fe.mel_filters_slaney, dtype=np.float64)
        theirs = mel.detach().double().cpu().numpy()
        if theirs.shape != ours.shape or not np.allclose(theirs, ours, rtol=1e-4, atol=1e-7):
            raise ValueError(f"{source}: the file's mel filter bank {tuple(theirs.shape)} differs from laion-clap's "
                             f"HTSAT settings ({c['mel_bins']} mels, {c['fmin']}-{c['fmax']} Hz) — use the "
                             f"[laion] extra (pip install 'chanmusic[laion]') to read it with laion-clap itself")
    return fe


def build_transformers_clap(sd: Mapping[str, torch.Tensor], source: str = "checkpoint"):
    """``(ClapAudioModelWithProjection, ClapFeatureExtractor)`` holding the laion audio weights ``sd``, strictly:
    every transformers weight must come from the file."""
    from transformers import ClapAudioConfig, ClapAudioModelWithProjection

    cfg, mapped = laion_to_transformers(sd, source)
    model = ClapAudioModelWithProjection(ClapAudioConfig(**cfg))
    own = model.state_dict()
    missing = sorted(set(own) - set(mapped))
    extra = sorted(set(mapped) - set(own))
    shape = sorted(k for k in set(own) & set(mapped) if own[k].shape != mapped[k].shape)
    if missing or extra or shape:
        parts = [f"missing {missing[:8]}" if missing else "", f"unexpected {extra[:8]}" if extra else "",
                 "shape " + ", ".join(f"{k} {tuple(mapped[k].shape)} vs {tuple(own[k].shape)}" for k in shape[:8])
                 if shape else ""]
        raise ValueError(f"{source}: laion-clap weights do not fit transformers' CLAP: "
                         + "; ".join(p for p in parts if p))
    model.load_state_dict(mapped, strict=True)
    return model.float().eval(), feature_extractor(sd, source)


def read_laion_audio(path: Path) -> dict[str, torch.Tensor]:
    """The CLAP audio weights of the laion-clap file ``path`` (the same reading as the laion-clap backend)."""
    from chanmusic.audio.clap_laion import laion_audio_state_dict
    from chanmusic.core.checkpoints import safe_load

    return laion_audio_state_dict(safe_load(path))


def load_laion_as_transformers(path: Path):
    """A laion-clap ``.pt`` file as a transformers CLAP backend: ``(backend, identity, description)`` for
    :class:`chanmusic.audio.clap.ClapEmbedder`."""
    from chanmusic.audio.clap_hf import HFClapBackend

    model, fe = build_transformers_clap(read_laion_audio(path), str(path))
    if int(fe.sampling_rate) != CLAP_SR:
        raise ValueError(f"{path}: feature extractor expects {fe.sampling_rate} Hz, not {CLAP_SR}")
    real = path.resolve()
    width = model.config.hidden_size
    return (HFClapBackend(model, fe, int16=True), f"clap:laion-hf:{real}:{file_stamp(real)}:{CLAP_PREP_VERSION}",
            f"laion-clap file {real} (HTSAT, width {width}) read by transformers' CLAP")


def convert(path: str | Path, out_dir: str | Path) -> Path:
    """Write the laion-clap file ``path`` as a transformers CLAP folder (``config.json``, ``model.safetensors``,
    ``preprocessor_config.json``) at ``out_dir``; returns it."""
    path, out = Path(path).expanduser(), Path(out_dir).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such laion-clap checkpoint")
    model, fe = build_transformers_clap(read_laion_audio(path), str(path))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    fe.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chanmusic.audio.clap_convert",
                                 description="Convert a laion-clap .pt checkpoint (unfused HTSAT) into a transformers "
                                             "CLAP folder, without laion-clap.")
    ap.add_argument("checkpoint", help="laion-clap .pt file, e.g. music_audioset_epoch_15_esc_90.14.pt")
    ap.add_argument("out_dir", help="folder to write (config.json, model.safetensors, preprocessor_config.json)")
    args = ap.parse_args(argv)
    try:
        out = convert(args.checkpoint, args.out_dir)
    except (ValueError, FileNotFoundError) as e:
        print(f"chanmusic: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} — use it as `clap: {out}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The laion-clap backend of :class:`chanmusic.audio.clap.ClapEmbedder`: reading an official laion-clap ``.pt``
checkpoint (audio weights only), building laion-clap's HTSAT model offline, and embedding with it.

laion-clap is imported inside the functions that need it (and without running ``laion_clap/__init__``, see
:func:`_import_clap_module`).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from chanmusic.audio._common import CLAP_PREP_VERSION, CLAP_SR, file_stamp
from chanmusic.core.checkpoints import key_diff, safe_load

log = logging.getLogger(__name__)

_LAION_AUDIO_PREFIXES = ("audio_branch.", "audio_transform.", "audio_projection.")
_LAION_AUDIO_KEYS = ("logit_scale_a",)
# audio width of the HTSAT variants laion-clap ships configs for -> the model name
_HTSAT_BY_WIDTH = {768: "HTSAT-tiny", 1024: "HTSAT-base", 2048: "HTSAT-large"}


def _import_clap_module():
    """Import laion-clap's ``clap_module`` without running ``laion_clap/__init__``.

    ``import laion_clap`` imports ``laion_clap.training.data``, which calls ``BertTokenizer.from_pretrained``,
    ``RobertaTokenizer.from_pretrained`` and ``BartTokenizer.from_pretrained`` at import time: offline that retries
    for about a minute per tokenizer and then fails. The model code lives in the self-contained ``clap_module``
    package inside the installed ``laion_clap`` folder, which ``laion_clap`` itself puts on ``sys.path`` (it is
    appended, as laion_clap does, so it shadows nothing). Only the model code is used here.
    """
    spec = importlib.util.find_spec("laion_clap")
    if spec is None or spec.origin is None:
        raise ImportError("laion-clap is not installed: pip install 'chanmusic[laion]' (or read the file without it: "
                          "chanmusic.audio.clap_convert)")
    pkg_dir = os.path.dirname(spec.origin)
    if pkg_dir not in sys.path:
        sys.path.append(pkg_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # timm.models.layers deprecation inside clap_module
        import clap_module  # noqa: F401
        from clap_module.factory import _MODEL_CONFIGS
        from clap_module.model import CLAP
    if not os.path.abspath(clap_module.__file__).startswith(os.path.abspath(pkg_dir)):
        raise ImportError(f"'clap_module' resolves to {clap_module.__file__}, not laion-clap's copy in {pkg_dir}")
    return CLAP, _MODEL_CONFIGS


def build_laion_clap(amodel: str = "HTSAT-tiny") -> tuple[torch.nn.Module, dict[str, Any]]:
    """A laion-clap ``CLAP`` model (unfused, fp32, random weights) for audio embedding, built offline.

    The audio side is laion-clap's own config for ``amodel`` (``HTSAT-tiny`` or ``HTSAT-base``). The text branch
    is laion-clap's built-in 'transformer' type shrunk to one 8-wide layer: the official ``tmodel='roberta'``
    downloads ``roberta-base``, and no text weights are ever used here. Returns ``(model, model_cfg)``.
    """
    import copy

    CLAP, configs = _import_clap_module()
    if amodel not in configs:
        raise ValueError(f"unknown laion-clap audio model {amodel!r}; available: {sorted(configs)}")
    cfg = copy.deepcopy(configs[amodel])
    cfg["text_cfg"].update(model_type="transformer", width=8, heads=1, layers=1, vocab_size=8, context_length=4)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.meshgrid.*")  # inside HTSAT's window attention
        model = CLAP(**cfg, enable_fusion=False, fusion_type="None")
    return model.float().eval(), cfg


def _is_laion_audio_key(k: str) -> bool:
    return k.startswith(_LAION_AUDIO_PREFIXES) or k in _LAION_AUDIO_KEYS


def _load_checkpoint(path: Path) -> Any:
    """A laion-clap checkpoint's contents without running code from it (:func:`chanmusic.core.checkpoints.safe_load`).

    The official LAION ``.pt`` files pickle numpy scalars beside the weights, which ``weights_only=True`` refuses;
    ``safe_load`` then reads the file with its allow-listed unpickler (numpy scalars are on the list; any other
    object is skipped, and a state dict that would need one is refused).
    """
    return safe_load(path)


def laion_audio_state_dict(checkpoint: Any) -> dict[str, torch.Tensor]:
    """The CLAP audio weights of a laion-clap checkpoint object.

    Unwraps ``{"state_dict": ...}``, strips a DataParallel/DDP ``module.`` prefix, and keeps only keys under
    ``audio_branch``, ``audio_transform``, ``audio_projection`` and ``logit_scale_a``.
    """
    sd = checkpoint["state_dict"] if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint else checkpoint
    if not isinstance(sd, Mapping):
        raise ValueError(f"not a laion-clap checkpoint: expected a state dict, got {type(sd).__name__}")
    out = {}
    for k, v in sd.items():
        k = k[len("module."):] if k.startswith("module.") else k
        if _is_laion_audio_key(k):
            if not isinstance(v, torch.Tensor):
                raise ValueError(f"laion-clap checkpoint key {k!r} is a {type(v).__name__}, not a tensor")
            out[k] = v
    if not out:
        raise ValueError("no CLAP audio weights found (expected keys under audio_branch / audio_projection)")
    return out


def _check_audio_keys(path: Path, amodel: str, model: torch.nn.Module, audio_sd: Mapping[str, torch.Tensor]) -> None:
    """Raise ``ValueError`` naming every missing, unexpected or mis-shaped CLAP audio key of ``audio_sd`` against
    ``model`` (:func:`chanmusic.core.checkpoints.key_diff`; the model's text keys, never loaded, are not missing)."""
    missing, unexpected, bad_shape = key_diff(model, audio_sd)
    missing = [k for k in missing if _is_laion_audio_key(k)]
    if not (missing or unexpected or bad_shape):
        return
    own = model.state_dict()

    def show(keys):
        return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")

    msg = [f"{path}: CLAP audio weights do not match laion-clap {amodel}"]
    if missing:
        msg.append(f"missing keys: {show(missing)}")
    if unexpected:
        msg.append(f"unexpected keys: {show(unexpected)}")
    if bad_shape:
        msg.append("shape mismatch: " + show([f"{k} {tuple(audio_sd[k].shape)} vs {tuple(own[k].shape)}"
                                              for k in bad_shape]))
    raise ValueError("; ".join(msg))


class LaionClapBackend:
    """laion-clap HTSAT audio tower; replicates ``CLAP_Module.get_audio_embedding_from_data`` for <= 10 s clips."""

    kind = "laion-clap"

    def __init__(self, model: torch.nn.Module, clip_samples: int):
        self.model = model
        self.clip_samples = clip_samples
        self.dim = int(model.audio_projection[-1].out_features)

    def __call__(self, clips: list[np.ndarray], device: torch.device) -> torch.Tensor:
        """``clips``: 1-D float32 48 kHz waveforms of at most ``clip_samples``. Returns ``[len(clips), dim]``."""
        batch = []
        for c in clips:
            # laion-clap quantises through int16 (clipping to [-1, 1]) before embedding
            c = ((np.clip(c, -1.0, 1.0) * 32767.0).astype(np.int16) / 32767.0).astype(np.float32)
            w = torch.from_numpy(c)
            n = w.shape[0]
            if n < self.clip_samples:  # 'repeatpad': tile whole copies, then zero-pad (laion-clap's rule)
                w = w.repeat(self.clip_samples // n)
                w = F.pad(w, (0, self.clip_samples - w.shape[0]))
            batch.append({"waveform": w, "longer": torch.tensor([False])})
        return self.model.get_audio_embedding(batch)


def load_laion_clap(path: Path, amodel: str | None = None) -> tuple[LaionClapBackend, str, str]:
    """Read the unfused laion-clap checkpoint ``path`` into a fresh laion-clap model.

    The architecture is read from the checkpoint's audio width (768 -> HTSAT-tiny, 1024 -> HTSAT-base) unless
    ``amodel`` is given; any missing, unexpected or mis-shaped audio key is an error. Returns
    ``(backend, identity, description)`` for :class:`chanmusic.audio.clap.ClapEmbedder`.
    """
    audio_sd = laion_audio_state_dict(_load_checkpoint(path))
    fused = sorted(k for k in audio_sd if ".fusion_model." in k or ".mel_conv" in k)
    if fused:
        raise ValueError(f"{path}: a fusion CLAP checkpoint (e.g. key {fused[0]!r}); only unfused laion-clap "
                         f"checkpoints are supported (e.g. 630k-audioset-best.pt, "
                         f"music_audioset_epoch_15_esc_90.14.pt)")
    w = audio_sd.get("audio_projection.0.weight")
    detected = _HTSAT_BY_WIDTH.get(int(w.shape[1])) if w is not None and w.ndim == 2 else None
    if amodel is None:
        if w is not None and detected is None:
            raise ValueError(f"{path}: cannot tell the laion-clap audio model from the checkpoint (audio "
                             f"projection {None if w is None else tuple(w.shape)}); pass amodel='HTSAT-tiny', "
                             f"'HTSAT-base' or another laion-clap model name")
        amodel = detected or "HTSAT-tiny"  # no projection key: the key check below names what is missing
    elif detected is not None and amodel in _HTSAT_BY_WIDTH.values() and detected != amodel:
        raise ValueError(f"{path}: audio width {w.shape[1]} means {detected}, but amodel={amodel!r} was asked")
    model, cfg = build_laion_clap(amodel)
    _check_audio_keys(path, amodel, model, audio_sd)
    model.load_state_dict(audio_sd, strict=False)  # strict=False: the text tower keeps its (unused) init
    cfg_audio = cfg["audio_cfg"]
    if int(cfg_audio["sample_rate"]) != CLAP_SR:
        raise ValueError(f"laion-clap {amodel} expects {cfg_audio['sample_rate']} Hz, not {CLAP_SR}")
    backend = LaionClapBackend(model, clip_samples=int(cfg_audio["clip_samples"]))
    real = path.resolve()
    return (backend, f"clap:laion:{amodel}:{real}:{file_stamp(real)}:{CLAP_PREP_VERSION}",
            f"laion-clap {amodel} from {real}")

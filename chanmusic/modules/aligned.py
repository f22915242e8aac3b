"""The aligned model: an EEG encoder, the head that reads it into the CLAP space, and the softmax temperature.

Alignment trains it, EEG2Mel trains it beside its mel regressor, reconstruction rebuilds it from an aligned checkpoint;
each stage holds one (:func:`hold`). A stage's checkpoint keeps the aligned model's entries at its top level
(``encoder.*``, ``head.*``, ``logit_scale``): the format every reader of aligned checkpoints knows.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from chanmusic.modules.heads import build_head, readout_channel_map
from chanmusic.modules.losses import clip_loss
from encoders.base import EncoderOutput

__all__ = ["AlignedModel", "hold", "MAX_LOGIT_SCALE"]

MAX_LOGIT_SCALE = math.log(100.0)  #: the temperature is clamped to >= 1/100


class AlignedModel(nn.Module):
    """EEG encoder + head -> CLAP-space embedding, and the learnable InfoNCE temperature (``logit_scale = log 1/T``).

    Args:
        encoder: any ``encoders.base.EEGEncoder``.
        clap_dim: CLAP embedding size.
        head, head_hidden, readout, head_queries: the head (``chanmusic.modules.heads.build_head``).
        temperature_init: initial softmax temperature.
        learn_temperature: learn the logit scale.
    """

    def __init__(self, encoder: nn.Module, clap_dim: int = 512, head: str = "mlp", head_hidden: int = 512,
                 readout: str | None = None, head_queries: int = 8, temperature_init: float = 0.07,
                 learn_temperature: bool = True):
        super().__init__()
        self.encoder = encoder
        self.head = build_head(head, encoder.embed_dim, clap_dim, head_hidden, readout, head_queries,
                               getattr(encoder, "n_tokens", None))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature_init)),
                                        requires_grad=learn_temperature)

    def embed(self, eeg: Tensor, channel_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(embedding [B, clap_dim] (not normalised), the encoder's pooled output [B, D] detached)``."""
        out = self.encoder(eeg, channel_mask)
        return self.head(out), out.pooled.detach()

    def forward(self, eeg: Tensor, channel_mask: Tensor | None = None) -> Tensor:
        """EEG ``[B, C, T]`` -> CLAP-space embedding ``[B, clap_dim]`` (not normalised)."""
        return self.embed(eeg, channel_mask)[0]

    def read(self, out: EncoderOutput) -> Tensor:
        """The head on an encoder output already computed (``[B, clap_dim]``)."""
        return self.head(out)

    def loss(self, eeg_emb: Tensor, clap: Tensor, music: Tensor | None = None) -> Tensor:
        """Symmetric InfoNCE at this model's temperature (``chanmusic.modules.losses.clip_loss``)."""
        return clip_loss(eeg_emb, clap, self.logit_scale, music)

    @property
    def temperature(self) -> Tensor:
        return 1.0 / self.logit_scale.exp()

    @torch.no_grad()
    def clamp_temperature(self) -> None:
        """Keep the logit scale in ``[0, log 100]`` (temperature ≥ 0.01), as CLIP does."""
        self.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)

    def freeze_encoder(self, train_channel_gain: bool = True) -> None:
        """No gradients into the encoder, except its alignment-only parts (no pretraining has them): the channel gain
        (``encoders.token_gain``) when ``train_channel_gain`` (frozen, it stays at its seeded start) and the linear
        skip (``encoders.token_skip``, zero at the start, so it always trains with the head)."""
        self.encoder.requires_grad_(False)
        gain = getattr(self.encoder, "channel_gain", None)
        if gain is not None:
            gain.requires_grad_(train_channel_gain)
        skip = getattr(self.encoder, "linear_skip", None)
        if skip is not None:
            skip.requires_grad_(True)

    @torch.no_grad()
    def channel_map(self, eeg: Tensor, channel_mask: Tensor | None = None) -> tuple[Tensor | None, str]:
        """Per-electrode share ``[B, C]`` of the readout this model uses, and its kind (the scalp maps,
        ``chanmusic.modules.heads.readout_channel_map``)."""
        out = self.encoder(eeg, channel_mask)
        return readout_channel_map(self.head, self.encoder, out, eeg, channel_mask)


def hold(owner: nn.Module, name: str, model: AlignedModel) -> None:
    """Make ``model`` the submodule ``owner.<name>`` whose state-dict entries sit at the owner's top level: saved
    as ``encoder.*`` / ``head.*`` / ``logit_scale`` and loaded from those keys (an aligned checkpoint of any
    chanmusic version)."""
    owner.add_module(name, model)
    inner = f"{name}."
    own_keys = tuple(model.state_dict().keys())

    def flatten(module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Any) -> None:
        items = list(state.items())
        state.clear()
        nested = prefix + inner
        for k, v in items:
            state[prefix + k[len(nested):] if k.startswith(nested) else k] = v

    def nest(module: nn.Module, state: dict[str, Any], prefix: str, *args: Any) -> None:
        for k in own_keys:
            flat, nested = prefix + k, prefix + inner + k
            if flat in state and nested not in state:
                state[nested] = state.pop(flat)

    owner.register_state_dict_post_hook(flatten)
    owner.register_load_state_dict_pre_hook(nest)


class HoldsAlignedModel:
    """What a stage holding an :class:`AlignedModel` as ``self.aligned`` exposes (alignment, EEG2Mel,
    reconstruction): its encoder and head, the embedding of EEG ``[B, C, T]`` -> ``[B, clap_dim]`` (not normalised)
    and the per-electrode share of its readout (the scalp maps). Put it before ``LightningModule`` in the bases."""

    aligned: AlignedModel

    @property
    def encoder(self) -> nn.Module:
        return self.aligned.encoder

    @property
    def head(self) -> nn.Module:
        return self.aligned.head

    def embed(self, eeg: Tensor, channel_mask: Tensor | None = None) -> Tensor:
        return self.aligned(eeg, channel_mask)

    def forward(self, eeg: Tensor, channel_mask: Tensor | None = None) -> Tensor:
        return self.aligned(eeg, channel_mask)

    def channel_map(self, eeg: Tensor, channel_mask: Tensor | None = None) -> tuple[Tensor | None, str]:
        return self.aligned.channel_map(eeg, channel_mask)

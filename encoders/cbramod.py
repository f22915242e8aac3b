"""CBraMod (Wang et al., ICLR 2025) as an ``EEGEncoder``: a thin adapter over ``braindecode.models.CBraMod``."""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import Tensor, nn

from encoders._foundation import WHERE, FoundationAdapter, channel_major, load_mapped, load_official
from chanmusic.core.renamed import renamed
from encoders.pretrained_sources import BRAINDECODE_HEADS, check_config, drop_prefixed, resolve_pretrained

# the pretraining patch-reconstruction head; the official fine-tuning code replaces it by nn.Identity()
# (models/model_for_*.py), and so do we.
CBRAMOD_PRETRAIN_ONLY = ("proj_out.0.weight", "proj_out.0.bias")
CHANNEL_SETS = ("all", "nearest")


def cbramod_official_to_braindecode(sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Official ``pretrained_weights.pth`` (plain state dict) -> braindecode names: identical, minus
    :data:`CBRAMOD_PRETRAIN_ONLY`. Returns (state dict, mapped name -> official name)."""
    out = {k: v for k, v in sd.items() if k not in CBRAMOD_PRETRAIN_ONLY}
    return out, {k: k for k in out}


class CBraModEncoder(FoundationAdapter):
    """CBraMod over ``braindecode.models.CBraMod`` with ``proj_out = Identity`` (encoder features, no head).

    Input path: resampled to **200 Hz**, zero-padded to whole 1-s patches (200 samples; CBraMod's spectral
    branch is fixed to 200-sample patches), scaled to **µV/100** (official ``/100``; ``"zscore"`` input
    first reads one standard deviation as ``zscore_uv`` µV). CBraMod has no channel names, but its
    positional encoding is a convolution over the channel axis, so the order matters:

    - ``channel_set="all"``: every electrode in the spatially coherent (front-to-back boustrophedon) order
      of ``encoders.channel_mapping.spatial_order``;
    - ``"nearest"``: the 19 electrodes nearest to CBraMod's pretraining channels (TUEG 10-20), in the
      pretraining order.

    Output: ``tokens [B, C'·P, 200]`` channel-major (channel ``c`` of the order above, patch ``p`` at
    ``c·P + p``), ``token_time [C'·P]`` = patch index, ``pooled`` = mean over present tokens.

    Channel mask: CBraMod builds one token per channel and patch and takes any number of channels, so an
    absent channel is **left out** (``absent="remove"``, default): the model runs on the present channels alone
    (in the same order, closing the gap, as a recording without that electrode would), once per distinct channel
    set in the batch. Its slots in the token grid are zero and marked absent in ``token_mask``; ``pooled``
    averages present tokens. ``absent="zero"``: zero-fill — the same as CBraMod's own ``mask`` argument, which
    replaces patches by its frozen all-zero ``mask_encoding`` — with the tokens left in the criss-cross attention.

    Fine-tuning recipe (``experiments/encoders/cbramod_recipe.yaml``): no layer-wise decay and no weight-decay
    exemptions in the official ``finetune_trainer.py``; the encoder is one learning-rate group (``backbone``).

    Args:
        init_from: published weights: the official ``pretrained_weights.pth`` (plain state dict, braindecode names),
            loaded with ``weights_only=True``, or a braindecode ``CBraMod`` folder / hub id
            (``encoders.pretrained_sources``: ``config.json`` must match this size, its head is dropped);
            ``proj_out.*`` is dropped by name, any other missing or unexpected key is an error.
        input_units, zscore_uv, montage, patch_fit: see ``LaBraMEncoder``.
        n_layer, nhead, dim_feedforward: size (official: 12, 8, 800; width is fixed at 200).
        dropout: braindecode ``drop_prob`` (official 0.1).
        absent: ``"remove"`` (default) or ``"zero"``, see above.
        pretrained: deprecated name of init_from.
    """

    model_sfreq = 200.0
    patch_size = 200
    model_units_per_uv = 1.0 / 100.0

    def __init__(self, n_channels: int, sfreq: float, n_times: int, ch_names: Sequence[str] | None = None, *,
                 init_from: str | None = None, input_units: str = "zscore", zscore_uv: float = 10.0,
                 channel_set: str = "all", montage: str = "GSN-HydroCel-129", patch_fit: str = "pad",
                 n_layer: int = 12, nhead: int = 8, dim_feedforward: int = 800, dropout: float = 0.1,
                 absent: str = "remove", pretrained: str | None = None):
        from braindecode.models import CBraMod

        init_from = renamed(WHERE, "pretrained", "init_from", pretrained, init_from, None)

        from encoders.channel_mapping import map_to_vocabulary, spatial_order

        if channel_set == "all":
            idx = spatial_order(ch_names, montage, n_channels=n_channels)
        elif channel_set == "nearest":
            cmap = map_to_vocabulary(ch_names, "tueg19", montage, n_channels=n_channels)
            idx = cmap.nearest()
            if len(idx) != len(cmap.vocab):
                raise ValueError("two CBraMod pretraining channels share their nearest electrode")
        else:
            raise ValueError(f"channel_set: {channel_set!r} is not one of {CHANNEL_SETS}")
        super().__init__(n_channels, sfreq, n_times, ch_names, idx, input_units, zscore_uv, patch_fit, absent)
        self.embed_dim = 200
        self.n_lr_layers = n_layer
        self.n_tokens = len(idx) * self.n_patches
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="braindecode")
            self.model = CBraMod(n_outputs=1, n_chans=len(idx), n_times=self.model_times, sfreq=self.model_sfreq,
                                 patch_size=self.patch_size, n_layer=n_layer, nhead=nhead,
                                 dim_feedforward=dim_feedforward, drop_prob=dropout, return_encoder_output=True)
        self.model.proj_out = nn.Identity()
        self.register_buffer("token_time", torch.arange(self.n_patches).repeat(len(idx)), persistent=False)
        if init_from:
            self.load_official(init_from)
            self.weights_source = str(init_from)  # lets a frozen-encoder run know it has weights to freeze

    def load_official(self, path: str) -> None:
        """Load pretrained weights: the official file, a braindecode folder or hub id (see class docstring)."""
        src = resolve_pretrained(path)
        check_config(src, self.model)
        sd = load_official(str(src.file))
        if src.layout == "braindecode":  # a braindecode CBraMod: drop its head and reconstruction head
            sd = drop_prefixed(sd, self.model.state_dict(), BRAINDECODE_HEADS + ("proj_out.",))
        mapped, origin = cbramod_official_to_braindecode(sd)
        load_mapped(self.model, mapped, origin, src.where)

    def encode(self, x: Tensor, present: Tensor | None):
        feats = self.model(x, return_features=True)["features"]  # [B, C', P, 200]
        return feats.flatten(1, 2), self.token_time, channel_major(present, self.n_patches), None

    def encode_subset(self, x: Tensor, kept: Tensor) -> tuple[Tensor, Tensor | None]:
        feats = self.model(x.index_select(1, kept), return_features=True)["features"]  # [b, k, P, 200]
        grid = feats.new_zeros(x.shape[0], self.n_model_channels, self.n_patches, feats.shape[-1])
        return grid.index_copy(1, kept, feats).flatten(1, 2), None

    def lr_layer_id(self, name: str) -> int:
        """``encoder.layers.i`` -> i + 1, the patch embedding -> 0, the rest on top (the BEiT rule; the official
        CBraMod recipe has no layer-wise decay)."""
        if name.startswith("model.patch_embedding"):
            return 0
        if name.startswith("model.encoder.layers."):
            return int(name.split(".")[3]) + 1
        return self.n_lr_layers + 1

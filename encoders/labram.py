"""LaBraM (Jiang et al., ICLR 2024) as an ``EEGEncoder``: a thin adapter over ``braindecode.models.Labram``."""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import Tensor, nn

from encoders._foundation import WHERE, FoundationAdapter, channel_major, load_mapped, load_official, named_channels
from chanmusic.core.renamed import renamed
from encoders.pretrained_sources import BRAINDECODE_HEADS, check_config, drop_prefixed, resolve_pretrained
from chanmusic.core.checkpoints import CheckpointError

# keys of the official pretraining checkpoint (labram-base.pth, ckpt["model"]) that the encoder does not
# use: the masked-EEG-modelling token and code-prediction heads (modeling_pretrain.py,
# NeuralTransformerForMEM); the official fine-tuning script drops them too.
LABRAM_PRETRAIN_ONLY = (
    "student.mask_token",
    "student.lm_head.weight", "student.lm_head.bias",
    "lm_head.weight", "lm_head.bias",
    "projection_head.0.weight", "projection_head.0.bias",
)
# official name -> braindecode name (applied to the key after "student." is stripped)
_RENAMES = (
    ("pos_embed", "position_embedding"),
    ("time_embed", "temporal_embedding"),
)


def labram_key_to_braindecode(key: str) -> str:
    """Official (``student.``-stripped) LaBraM key -> braindecode ``Labram`` key."""
    for old, new in _RENAMES:
        if key == old:
            return new
    if key.startswith("patch_embed."):
        return "patch_embed.temporal_conv." + key[len("patch_embed."):]
    return key.replace(".mlp.fc1.", ".mlp.0.").replace(".mlp.fc2.", ".mlp.2.")


def labram_key_to_official(key: str) -> str:
    """braindecode ``Labram`` key -> official key (with ``student.``); the inverse of the mapping."""
    for old, new in _RENAMES:
        if key == new:
            return "student." + old
    if key.startswith("patch_embed.temporal_conv."):
        key = "patch_embed." + key[len("patch_embed.temporal_conv."):]
    return "student." + key.replace(".mlp.0.", ".mlp.fc1.").replace(".mlp.2.", ".mlp.fc2.")


def labram_official_to_braindecode(sd: dict[str, Tensor], n_patches: int) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Map an official pretraining state dict (``ckpt["model"]``) onto braindecode names.

    Strips ``student.``, renames (``pos_embed``, ``time_embed``, ``patch_embed.*``, ``mlp.fc1/fc2``), slices
    ``time_embed`` (16 rows) to the ``n_patches + 1`` rows braindecode allocates (rows ``0..P-1`` are the
    ones either implementation adds to the patches), and drops :data:`LABRAM_PRETRAIN_ONLY` by name.
    Anything else passes through under its own name, so strict loading reports it.
    Returns (mapped state dict, mapped name -> official name).
    """
    out, origin = {}, {}
    for k, v in sd.items():
        if k in LABRAM_PRETRAIN_ONLY:
            continue
        new = labram_key_to_braindecode(k[len("student."):]) if k.startswith("student.") else k
        if new == "temporal_embedding":
            if v.shape[1] < n_patches + 1:
                raise CheckpointError(f"{k} has {v.shape[1]} rows: windows of at most {v.shape[1] - 1} patches "
                                      f"(s at 200 Hz) can use it, this window has {n_patches}")
            v = v[:, : n_patches + 1]
        out[new], origin[new] = v, k
    return out, origin


class LaBraMEncoder(FoundationAdapter):
    """LaBraM over ``braindecode.models.Labram``, no classification head.

    Input path (``FoundationAdapter.prepare``): electrodes are named by their nearest LaBraM vocabulary
    position (``encoders.channel_mapping``), resampled to **200 Hz**, zero-padded to whole 1-s patches
    (200 samples) and scaled to **µV/100** (the official ``samples / 100``): ``input_units="uV"`` divides by
    100; ``"zscore"`` first reads one standard deviation as ``zscore_uv`` µV.

    Output: ``tokens [B, C'·P, D]`` channel-major (channel ``c``, patch ``p`` at ``c·P + p``) after the final
    LayerNorm, ``token_time [C'·P]`` = patch index, ``pooled`` = mean over present tokens
    (``readout="mean"``) or the CLS token (``"cls"``).

    Channel mask: LaBraM builds one token per channel and patch and names each channel by its position
    embedding, so an absent channel is **left out** (``absent="remove"``, default): the model runs on the present
    channels with their names only, as the official code does for any channel subset — the same tokens as a
    recording that never had the channel. Its slots in the token grid are zero and ``token_mask`` marks them
    absent; ``pooled`` averages present tokens (or is the CLS of the present channels). ``absent="zero"``: the
    older zero-fill (the absent channel's tokens exist, carrying conv bias + position embedding, and are
    attended to; its values still never reach the output).

    Fine-tuning recipe hooks (``experiments/encoders/labram_recipe.yaml``): ``lr_layer_id`` is the official
    ``get_num_layer_for_vit`` (``optim_factory.py``) on braindecode names, ``no_weight_decay_names`` the
    official ``no_weight_decay()`` (``modeling_finetune.py``: ``pos_embed``, ``cls_token``, ``time_embed``).

    Args:
        init_from: published weights: the official ``labram-base.pth`` (``ckpt["model"]``, keys ``student.*``), loaded
            with ``weights_only=True`` through our key mapping (:func:`labram_official_to_braindecode`), or a
            braindecode ``Labram`` folder / hub id (``encoders.pretrained_sources``: its ``config.json`` must
            match this size, its head is dropped); any missing or unexpected key is an error.
        input_units: ``"zscore"`` (data default), ``"uV"`` (``data.scaling: none``), ``"mV"``, ``"V"``.
        zscore_uv: µV per standard deviation for z-scored input.
        channel_set: ``"all"`` electrodes (names repeat) or ``"nearest"`` (one electrode per name).
        max_angle: drop electrodes farther than this (degrees) from their name.
        montage: MNE montage of the input electrodes.
        patch_fit: ``"pad"`` or ``"crop"`` the resampled window to whole patches.
        embed_dim: token width; the temporal conv gives ``embed_dim / 25`` channels per 25 time steps
            (200 = official base; must be a multiple of 100).
        num_layers, num_heads, mlp_ratio: transformer size (official base: 12, 10, 4).
        drop_path, dropout, attn_dropout: regularisation (braindecode names ``*_prob``).
        absent: ``"remove"`` (default) or ``"zero"``, see above.
        readout: what ``pooled`` is: ``"mean"`` of the present tokens or the ``"cls"`` token.
        pretrained: deprecated name of init_from.
        pooling: deprecated name of readout.
    """

    model_sfreq = 200.0
    patch_size = 200
    model_units_per_uv = 1.0 / 100.0

    def __init__(self, n_channels: int, sfreq: float, n_times: int, ch_names: Sequence[str] | None = None, *,
                 init_from: str | None = None, input_units: str = "zscore", zscore_uv: float = 10.0,
                 channel_set: str = "all", max_angle: float | None = None, montage: str = "GSN-HydroCel-129",
                 patch_fit: str = "pad", readout: str = "mean", embed_dim: int = 200, num_layers: int = 12,
                 num_heads: int = 10, mlp_ratio: float = 4.0, drop_path: float = 0.0, dropout: float = 0.0,
                 attn_dropout: float = 0.0, absent: str = "remove", pretrained: str | None = None,
                 pooling: str | None = None):
        from braindecode.models import Labram

        init_from = renamed(WHERE, "pretrained", "init_from", pretrained, init_from, None)
        readout = renamed(WHERE, "pooling", "readout", pooling, readout, "mean")

        idx, names = named_channels(ch_names, n_channels, "labram", channel_set, montage, max_angle)
        super().__init__(n_channels, sfreq, n_times, ch_names, idx, input_units, zscore_uv, patch_fit, absent)
        if readout not in ("mean", "cls"):
            raise ValueError(f"readout: {readout!r} is not 'mean' or 'cls'")
        per_step = self.patch_size // 8  # the temporal conv (stride 8) leaves 25 steps per patch
        if embed_dim % per_step or (embed_dim // per_step) % 4:
            raise ValueError(f"embed_dim must be a multiple of {4 * per_step} (conv channels x {per_step}), got {embed_dim}")
        self.model_ch_names = names
        self.readout = readout
        self.n_lr_layers = num_layers
        self.embed_dim = embed_dim
        self.n_tokens = len(names) * self.n_patches
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="braindecode")
            self.model = Labram(
                n_times=self.model_times, n_outputs=0, n_chans=len(names), sfreq=self.model_sfreq,
                patch_size=self.patch_size, embed_dim=embed_dim, conv_out_channels=embed_dim // per_step,
                num_layers=num_layers, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=False,
                qk_norm=nn.LayerNorm, init_values=0.1, use_abs_pos_emb=True, use_mean_pooling=False,
                drop_prob=dropout, attn_drop_prob=attn_dropout, drop_path_prob=drop_path)
        if self.model.embed_dim != embed_dim:
            raise ValueError(f"Labram built embed_dim {self.model.embed_dim}, expected {embed_dim}")
        self.register_buffer("token_time", torch.arange(self.n_patches).repeat(len(names)), persistent=False)
        if init_from:
            self.load_official(init_from)
            self.weights_source = str(init_from)  # lets a frozen-encoder run know it has weights to freeze

    def load_official(self, path: str) -> None:
        """Load pretrained weights: the official checkpoint, a braindecode folder or hub id (see class docstring)."""
        src = resolve_pretrained(path)
        check_config(src, self.model)
        sd = load_official(str(src.file), "model")
        if src.layout == "braindecode":  # a braindecode Labram: drop its classification head
            sd = drop_prefixed(sd, self.model.state_dict(), BRAINDECODE_HEADS)
        mapped, origin = labram_official_to_braindecode(sd, self.n_patches)
        load_mapped(self.model, mapped, origin, src.where, labram_key_to_official if src.layout == "file" else None)

    def encode(self, x: Tensor, present: Tensor | None):
        out = self.model(x, return_features=True, ch_names=self.model_ch_names)
        cls = out["cls_token"] if self.readout == "cls" else None
        return out["features"], self.token_time, channel_major(present, self.n_patches), cls

    def encode_subset(self, x: Tensor, kept: Tensor) -> tuple[Tensor, Tensor | None]:
        names = [self.model_ch_names[i] for i in kept.tolist()]
        out = self.model(x.index_select(1, kept), return_features=True, ch_names=names)
        b, d = x.shape[0], out["features"].shape[-1]
        grid = out["features"].new_zeros(b, self.n_model_channels, self.n_patches, d)
        grid = grid.index_copy(1, kept, out["features"].reshape(b, len(names), self.n_patches, d))
        return grid.flatten(1, 2), out["cls_token"] if self.readout == "cls" else None

    def lr_layer_id(self, name: str) -> int:
        """Official ``get_num_layer_for_vit`` (LaBraM ``optim_factory.py``) on the official name of ``name``:
        ``cls_token``, ``mask_token``, ``pos_embed`` and ``patch_embed.*`` -> 0, ``blocks.i.*`` -> i + 1, the rest
        (``time_embed`` included, as in the official rule) -> ``n_lr_layers + 1``."""
        if not name.startswith("model."):
            return self.n_lr_layers + 1
        off = labram_key_to_official(name[len("model."):])[len("student."):]
        if off in ("cls_token", "mask_token", "pos_embed") or off.startswith("patch_embed"):
            return 0
        if off.startswith("blocks."):
            return int(off.split(".")[1]) + 1
        return self.n_lr_layers + 1

    def no_weight_decay_names(self) -> set[str]:
        """Official ``no_weight_decay()``: ``pos_embed``, ``cls_token``, ``time_embed`` (braindecode names)."""
        return {"model.position_embedding", "model.cls_token", "model.temporal_embedding"}

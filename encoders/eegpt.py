"""EEGPT (Wang et al., NeurIPS 2024) as an ``EEGEncoder``: a thin adapter over ``braindecode.models.EEGPT``."""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import Tensor, nn

from encoders._foundation import WHERE, FoundationAdapter, load_mapped, load_official, named_channels
from chanmusic.core.renamed import renamed
from encoders.pretrained_sources import BRAINDECODE_HEADS, check_config, drop_prefixed, resolve_pretrained
from chanmusic.core.checkpoints import CheckpointError

# submodules of the official pretraining LightningModule (LitEEGPT) that downstream use ignores: the online
# encoder (downstream code loads the EMA ``target_encoder``), the feature predictor and the reconstructor.
EEGPT_PRETRAIN_ONLY_PREFIXES = ("encoder.", "predictor.", "reconstructor.")
EEGPT_ENCODER_PREFIX = "target_encoder."
# braindecode EEGPT arguments this adapter sets its own way whatever a braindecode folder's config.json says:
# non-overlapping patches (the official downstream code), real channels (no channel projection)
EEGPT_OUR_CHOICES = ("patch_stride", "chan_proj_type")


def eegpt_official_to_braindecode(sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Map an official Lightning ``state_dict`` onto braindecode's ``EEGPT.target_encoder`` names.

    ``target_encoder.X`` -> ``X`` (braindecode keeps the official names inside ``target_encoder``); keys
    under :data:`EEGPT_PRETRAIN_ONLY_PREFIXES` are dropped by name; anything else passes through, so strict
    loading reports it. Returns (mapped state dict, mapped name -> official name).
    """
    out, origin = {}, {}
    for k, v in sd.items():
        if k.startswith(EEGPT_PRETRAIN_ONLY_PREFIXES):
            continue
        new = k[len(EEGPT_ENCODER_PREFIX):] if k.startswith(EEGPT_ENCODER_PREFIX) else k
        out[new], origin[new] = v, k
    return out, origin


class EEGPTEncoder(FoundationAdapter):
    """EEGPT over ``braindecode.models.EEGPT`` (``chan_proj_type="none"``, ``patch_stride=None``), no head.

    Input path: electrodes are named by their nearest position among the 58 EEGPT pretraining channels
    (``encoders.channel_mapping``), resampled to **256 Hz**, zero-padded to whole 64-sample patches, scaled
    to **mV** (the official ``/1000`` from µV; ``"zscore"`` input first reads one standard deviation as
    ``zscore_uv`` µV) and, like the official pre-processing, **average-referenced** per window over the
    present channels (``average_reference``).

    Output: EEGPT's encoder attends across channels within each patch and returns only its ``embed_num``
    summary tokens per patch: ``tokens [B, P, embed_num·embed_dim]`` (one token per 250-ms patch),
    ``token_time = arange(P)``, ``pooled`` = mean over patches. ``n_tokens = P``.

    Channel mask: absent channels are excluded from the average reference, then **left out**
    (``absent="remove"``, default) with EEGPT's own token selection (``target_encoder(..., mask_x=idx)``, the
    pretraining mechanism, which gathers the kept channel tokens after the channel embedding): the summary
    tokens attend to the present channels only, as for a recording without the absent ones. The selection is
    one per call, so samples are grouped by their channel set. ``absent="zero"``: zero-filled channels whose
    tokens (channel embedding + patch-embedding bias) are attended to. Tokens are per patch, so there is no
    token to mask.

    Fine-tuning recipe hooks: ``lr_layer_id`` is the BEiT/LaBraM ``get_num_layer_for_vit`` rule applied to the
    encoder's own names (``patch_embed`` -> 0, ``blocks.i`` -> i + 1, the rest on top) — the official EEGPT
    script (``downstream_tueg/run_class_finetuning_EEGPT_change.py``) prefixes every name with
    ``target_encoder.``, so there the rule matches nothing and every parameter gets scale 1;
    ``no_weight_decay_names`` is what its skip list actually exempts: ``summary_token`` only (it lists
    ``chan_embed``, which never equals the parameter's name ``chan_embed.weight``).

    The channel-embedding table is the official 62 rows (braindecode would grow it to ``max(62, C)`` rows
    whose extra rows no mapped name uses).

    Args:
        init_from: published weights: the official ``eegpt_mcae_58chs_4s_large4E.ckpt`` (Lightning: ``state_dict``,
            encoder under ``target_encoder.*``), loaded with ``weights_only=True`` through
            :func:`eegpt_official_to_braindecode`, or a braindecode ``EEGPT`` folder / hub id
            (``encoders.pretrained_sources``: ``config.json`` must match this size; head, channel projection and
            channel ids are dropped); any missing or unexpected key is an error.
        input_units, zscore_uv, channel_set, max_angle, montage, patch_fit: see ``LaBraMEncoder``.
        average_reference: subtract the mean over present channels of each window (official: yes).
        embed_dim, embed_num, depth, num_heads, mlp_ratio: size (official large4E: 512, 4, 8, 8, 4).
        drop_path, dropout, attn_dropout: regularisation.
        init_std: standard deviation of the random initialisation (braindecode/official: 0.02, tuned for width
            512); a narrower demo model keeps the official per-layer gain with ``0.02 * sqrt(512 / embed_dim)``.
            Irrelevant once weights are loaded.
        absent: ``"remove"`` (default) or ``"zero"``, see above.
        pretrained: deprecated name of init_from.
    """

    model_sfreq = 256.0
    patch_size = 64
    model_units_per_uv = 1.0 / 1000.0

    def __init__(self, n_channels: int, sfreq: float, n_times: int, ch_names: Sequence[str] | None = None, *,
                 init_from: str | None = None, input_units: str = "zscore", zscore_uv: float = 10.0,
                 channel_set: str = "all", max_angle: float | None = None, montage: str = "GSN-HydroCel-129",
                 patch_fit: str = "pad", average_reference: bool = True, embed_dim: int = 512, embed_num: int = 4,
                 depth: int = 8, num_heads: int = 8, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 dropout: float = 0.0, attn_dropout: float = 0.0, init_std: float = 0.02, absent: str = "remove",
                 pretrained: str | None = None):
        from braindecode.models import EEGPT

        init_from = renamed(WHERE, "pretrained", "init_from", pretrained, init_from, None)
        from braindecode.models.eegpt import CHANNEL_DICT

        idx, names = named_channels(ch_names, n_channels, "eegpt", channel_set, montage, max_angle)
        super().__init__(n_channels, sfreq, n_times, ch_names, idx, input_units, zscore_uv, patch_fit, absent)
        self.model_ch_names = names
        self.n_lr_layers = depth
        self.average_reference = average_reference
        self.embed_dim = embed_num * embed_dim
        self.n_tokens = self.n_patches
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="braindecode")
            self.model = EEGPT(
                n_outputs=1, n_chans=len(names), chs_info=[{"ch_name": n} for n in names],
                n_times=self.model_times, sfreq=self.model_sfreq, patch_size=self.patch_size, patch_stride=None,
                embed_num=embed_num, embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                qkv_bias=True, drop_prob=dropout, attn_drop_rate=attn_dropout, drop_path_rate=drop_path,
                return_encoder_output=True, chan_proj_type="none", init_std=init_std)
        enc = self.model.target_encoder
        if enc.chan_embed.num_embeddings != len(CHANNEL_DICT):
            enc.chan_embed = nn.Embedding(len(CHANNEL_DICT), embed_dim)
            nn.init.normal_(enc.chan_embed.weight, std=init_std)
        if int(self.model.chans_id.max()) >= len(CHANNEL_DICT):
            raise ValueError("an input channel fell back to a sequential EEGPT id; check the channel mapping")
        self.register_buffer("token_time", torch.arange(self.n_patches), persistent=False)
        if init_from:
            self.load_official(init_from)
            self.weights_source = str(init_from)  # lets a frozen-encoder run know it has weights to freeze

    def load_official(self, path: str) -> None:
        """Load pretrained weights: the official checkpoint, a braindecode folder or hub id (see class docstring)."""
        src = resolve_pretrained(path)
        check_config(src, self.model, ignore=EEGPT_OUR_CHOICES)
        sd = load_official(str(src.file), "state_dict")
        if not any(k.startswith(EEGPT_ENCODER_PREFIX) for k in sd):
            raise CheckpointError(f"{src.where}: no '{EEGPT_ENCODER_PREFIX}*' keys — not EEGPT weights")
        if src.layout == "braindecode":  # a braindecode EEGPT: drop its head, channel projection and channel ids
            sd = drop_prefixed(sd, (), BRAINDECODE_HEADS + ("chan_proj.", "chans_id"))
            table = sd.get(EEGPT_ENCODER_PREFIX + "chan_embed.weight")
            rows = self.model.target_encoder.chan_embed.num_embeddings
            if table is not None and table.shape[0] > rows:  # braindecode grows it to max(62, C) rows; rows
                sd[EEGPT_ENCODER_PREFIX + "chan_embed.weight"] = table[:rows]  # past 62 serve no named channel
        mapped, origin = eegpt_official_to_braindecode(sd)
        load_mapped(self.model.target_encoder, mapped, origin, src.where, lambda k: EEGPT_ENCODER_PREFIX + k)

    def prepare(self, eeg: Tensor, channel_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        x, present = super().prepare(eeg, channel_mask)
        if self.average_reference:
            if present is None:
                x = x - x.mean(1, keepdim=True)
            else:
                w = present.unsqueeze(-1).to(x.dtype)
                mean = (x * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1.0)
                x = (x - mean) * w
        return x, present

    def encode(self, x: Tensor, present: Tensor | None):
        return self.model(x, return_features=True)["features"], self.token_time, None, None

    def encode_subset(self, x: Tensor, kept: Tensor) -> tuple[Tensor, Tensor | None]:
        c = self.n_model_channels
        idx = torch.arange(self.n_patches, device=x.device).unsqueeze(1) * c + kept.to(x.device).unsqueeze(0)
        z = self.model.target_encoder(x, self.model.chans_id, mask_x=idx)  # [b, P, embed_num, D]
        return z.flatten(2), None

    def token_mask_of(self, present: Tensor) -> None:
        return None

    def lr_layer_id(self, name: str) -> int:
        sub = name[len("model.target_encoder."):] if name.startswith("model.target_encoder.") else ""
        if sub.startswith("patch_embed"):
            return 0
        if sub.startswith("blocks."):
            return int(sub.split(".")[1]) + 1
        return self.n_lr_layers + 1

    def no_weight_decay_names(self) -> set[str]:
        return {"model.target_encoder.summary_token"}

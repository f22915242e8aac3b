"""Where an encoder's ``init_from:`` (published weights) comes from: an official release file, a local braindecode folder, or a
braindecode hub id — one resolver for every foundation encoder.

- **a file** (``labram-base.pth``, ``eegpt_mcae_58chs_4s_large4E.ckpt``, ``pretrained_weights.pth``, a
  ``.safetensors``): read as released, through each adapter's key map.
- **a braindecode folder**: what ``Model.save_pretrained`` / ``push_to_hub`` write (braindecode 1.8.1,
  ``models/base.py``): ``config.json`` (the constructor arguments) and ``model.safetensors`` and/or
  ``pytorch_model.bin`` (the state dict under braindecode's own names).
- **a hub id** (``braindecode/labram-pretrained``, optionally ``@revision``): the same folder fetched by
  ``huggingface_hub.hf_hub_download`` into the usual Hugging Face cache (so ``HF_HUB_OFFLINE=1`` and
  ``HF_HUB_CACHE`` work as everywhere else).

braindecode's own ``from_pretrained`` loads with ``strict=False`` and drops mismatched keys silently; here every
source goes through the adapter's strict key check (``encoders._foundation.load_mapped``), and a folder's
``config.json`` is compared with the encoder's own architecture (:func:`check_config`): a difference that leaves the
shapes alone (``num_heads``, say) would otherwise load without complaint and compute something else.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from torch import Tensor, nn

from chanmusic.core.checkpoints import CheckpointError

#: weight files of a braindecode folder, in the order they are tried (``save_pretrained`` writes both)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: the classification head every braindecode model has under this name (the encoders have none)
BRAINDECODE_HEADS = ("final_layer.",)
#: suffixes that make a missing ``init_from:`` a missing file rather than a hub id
FILE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".pkl")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")

#: config.json entries that are not the architecture: the signal (set from the data), regularisation,
#: initialisation, the head and the library version
CONFIG_NOT_ARCHITECTURE = frozenset({
    "n_outputs", "n_chans", "chs_info", "n_times", "sfreq", "input_window_seconds", "braindecode_version",
    "drop_prob", "attn_drop_prob", "drop_path_prob", "attn_drop_rate", "drop_path_rate", "dropout",
    "init_std", "init_scale", "init_values", "return_encoder_output", "final_layer", "n_chans_target",
    "chan_conv_max_norm",
})


@dataclass(frozen=True)
class WeightsSource:
    """A resolved ``init_from:`` value.

    spec: what the user wrote. file: the weights file to read. layout: ``"file"`` (a file as released) or
    ``"braindecode"`` (a ``save_pretrained`` folder, braindecode names). config: that folder's ``config.json``
    (``None`` for a file). where: how it was found, for messages and provenance (path, or hub id + snapshot).
    """

    spec: str
    file: Path
    layout: str
    config: dict[str, Any] | None
    where: str


def resolve_pretrained(spec: str) -> WeightsSource:
    """Find the weights ``spec`` names: an existing file, an existing braindecode folder, else a hub id."""
    spec = str(spec)
    path = Path(spec).expanduser()
    if path.is_file():
        return WeightsSource(spec, path, "file", None, str(path))
    if path.is_dir():
        return _folder(spec, path, str(path))
    if path.suffix in FILE_SUFFIXES or spec.startswith((".", "/", "~")) or not _HUB_ID.match(spec):
        raise CheckpointError(f"init_from: {spec!r} not found — give an official weights file, a braindecode "
                              f"folder (config.json + model.safetensors) or a hub id such as "
                              f"braindecode/labram-pretrained")
    return _hub(spec)


def _folder(spec: str, path: Path, where: str) -> WeightsSource:
    files = [path / f for f in WEIGHT_FILES if (path / f).is_file()]
    if not files:
        present = sorted(p.name for p in path.iterdir())[:8]
        raise CheckpointError(f"init_from: {path}: not a braindecode folder (no {' or '.join(WEIGHT_FILES)}; "
                              f"found {present}) — pass the weights file itself, or a folder written by "
                              f"braindecode's save_pretrained")
    return WeightsSource(spec, files[0], "braindecode", _read_config(path / "config.json"), where)


def _read_config(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable config.json ({e}) — re-download the folder") from e
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: config.json is not a JSON object — re-download the folder")
    return cfg


def _hub(spec: str) -> WeightsSource:
    """``owner/name[@revision]`` through the Hugging Face cache (downloads unless ``HF_HUB_OFFLINE=1``)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    repo, _, revision = spec.partition("@")
    fix = (f"download it once online (huggingface-cli download {repo}) or pass a local braindecode folder "
           f"(config.json + model.safetensors)")

    def fetch(name: str) -> Path | None:
        """The cached (or downloaded) file, or None when the repo or the offline cache has no such file."""
        try:
            return Path(hf_hub_download(repo_id=repo, filename=name, revision=revision or None))
        except LocalEntryNotFoundError:
            not_cached.append(name)
            return None
        except EntryNotFoundError:
            return None
        except Exception as e:  # unknown repo, no network, gated repo, bad revision, ...
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise CheckpointError(f"init_from: {spec!r} is not a file or folder here and the hub repo could not be "
                                  f"read ({type(e).__name__}: {first}) — {fix}") from e

    not_cached: list[str] = []
    weights = next((w for w in map(fetch, WEIGHT_FILES) if w is not None), None)
    if weights is None:
        if not_cached:
            raise CheckpointError(f"init_from: {spec!r} is not a file or folder here, and not in the local Hugging "
                                  f"Face cache (offline) — {fix}")
        raise CheckpointError(f"init_from: hub repo {repo!r} has none of {', '.join(WEIGHT_FILES)} — is it a "
                              f"braindecode model repo?")
    config = fetch("config.json")
    return WeightsSource(spec, weights, "braindecode", _read_config(config) if config else None,
                         f"hub {repo} (snapshot {weights.parent.name})")


def check_config(source: WeightsSource, model: nn.Module, ignore: Iterable[str] = ()) -> None:
    """Compare a braindecode folder's ``config.json`` with ``model``'s own (``build_model_config``) on every
    architecture entry both have; raise :class:`CheckpointError` naming each difference."""
    if source.config is None:
        return
    from braindecode.models.util import build_model_config

    ours = json.loads(json.dumps(build_model_config(model), default=str))
    skip = CONFIG_NOT_ARCHITECTURE | set(ignore)
    diff = [f"{k}={source.config[k]!r} (this encoder: {ours[k]!r})" for k in sorted(set(ours) & set(source.config))
            if k not in skip and _norm(source.config[k]) != _norm(ours[k])]
    if diff:
        raise CheckpointError(f"{source.where}: config.json describes another architecture: {', '.join(diff)} — "
                              f"set the encoder's size arguments to match, or use weights of this size")


def _norm(v: Any) -> Any:
    """Tuples and lists compare equal, ints and equal floats too."""
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def drop_prefixed(sd: Mapping[str, Tensor], own: Iterable[str], prefixes: tuple[str, ...]) -> dict[str, Tensor]:
    """``sd`` without the keys that start with one of ``prefixes`` and are not ``own`` keys (a braindecode
    model's classification head, channel projection or channel-id buffer: parts the encoder does not have)."""
    own = set(own)
    return {k: v for k, v in sd.items() if k in own or not k.startswith(prefixes)}

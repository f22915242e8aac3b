"""Untrusted files never run code and fail with errors that name the file and the problem.

- A pickle-bomb checkpoint (unpickling it would run a shell command; here a harmless ``touch`` of a marker
  file) given to ``safe_load``, to ``AlignModule(init_from=...)`` or to ``chanmusic fit
  --model.init_args.init_from`` is refused with :class:`CheckpointError`; the marker never appears.
  A control shows the bomb is live: a plain ``torch.load(weights_only=False)`` does create the marker.
- A truncated checkpoint and one with renamed / missing / reshaped keys give errors naming the problem.
- A cache whose ``segments.npy`` was replaced by an object array (here holding the same bomb) gives
  :class:`CacheError` naming the file, through the data module that training uses.
"""
from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from chanmusic.stages.align import AlignModule
from chanmusic.stages.init_from import CheckpointError, load_encoder_weights, safe_load
from datamodules.cache import CacheError
from datamodules.datamodule import NMEDDataModule
from encoders.linear_reference import LinearReference

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "scripts"))
import ddp_align  # noqa: E402


class Bomb:
    """Unpickling calls ``os.system("touch <marker>")``: harmless, but proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def _encoder(n_channels: int = 4) -> LinearReference:
    return LinearReference(n_channels=n_channels, sfreq=125.0, n_times=250, embed_dim=8)


def _align(**kw) -> AlignModule:
    return AlignModule(_encoder(kw.pop("n_channels", 4)), clap_dim=16, head="linear", **kw)


@pytest.fixture
def good_ckpt(tmp_path) -> Path:
    """A Lightning-style checkpoint of an align model (``state_dict`` with ``encoder.*`` keys)."""
    path = tmp_path / "good.ckpt"
    torch.save({"state_dict": _align().state_dict(), "global_step": 3}, path)
    return path


@pytest.fixture
def bomb(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    path = tmp_path / "bomb.ckpt"
    torch.save({"state_dict": {"encoder.proj.weight": Bomb(marker), "encoder.proj.bias": torch.zeros(8)}}, path)
    return path, marker


def test_good_checkpoint_initialises_the_encoder(good_ckpt):
    src = torch.load(good_ckpt, weights_only=True)["state_dict"]
    model = _align(init_from=str(good_ckpt))
    assert torch.equal(model.encoder.proj.weight, src["encoder.proj.weight"])


def test_pickle_bomb_is_refused_everywhere_and_runs_nothing(bomb, capsys):
    path, marker = bomb
    with pytest.raises(CheckpointError, match="refused to load") as e:
        safe_load(path)
    assert str(path) in str(e.value)
    with pytest.raises(CheckpointError, match="refused to load"):
        _align(init_from=str(path))
    with pytest.raises(CheckpointError, match="refused to load"):
        load_encoder_weights(_encoder(), path)
    assert not marker.exists(), "unpickling ran code"

    # through the CLI: one line naming the file, exit code 2
    from chanmusic.cli import main

    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", str(ROOT / "experiments/demo.yaml"),
              "--config", str(ROOT / "experiments/align/default.yaml"),
              "--config", str(ROOT / "experiments/encoders/linear_reference.yaml"),
              "--data.root", str(path.parent), "--model.init_args.init_from", str(path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert f"chanmusic: error: {path}: refused to load" in err
    assert not marker.exists(), "unpickling ran code"

    # control: the bomb is live, so the checks above mean something
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_truncated_checkpoint_is_a_clear_error(good_ckpt, tmp_path):
    data = good_ckpt.read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as e:
        safe_load(cut)
    assert str(cut) in str(e.value)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        _align(init_from=str(cut))
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.ckpt"):
        safe_load(empty)
    with pytest.raises(CheckpointError, match="not found"):
        safe_load(tmp_path / "nope.ckpt")


def test_renamed_missing_or_reshaped_keys_are_named(good_ckpt, tmp_path):
    sd = torch.load(good_ckpt, weights_only=True)["state_dict"]

    renamed = dict(sd)
    renamed["encoder.projection.weight"] = renamed.pop("encoder.proj.weight")
    path = tmp_path / "renamed.ckpt"
    torch.save({"state_dict": renamed}, path)
    with pytest.raises(CheckpointError) as e:
        _align(init_from=str(path))
    msg = str(e.value)
    assert "missing keys ['proj.weight']" in msg and "unexpected keys ['projection.weight']" in msg, msg
    assert str(path) in msg

    no_encoder = {k.replace("encoder.", "backbone.", 1): v for k, v in sd.items()}
    path = tmp_path / "no_encoder.ckpt"
    torch.save({"state_dict": no_encoder}, path)
    with pytest.raises(CheckpointError, match="no 'encoder.\\*' weights"):
        _align(init_from=str(path))

    with pytest.raises(CheckpointError, match="shape mismatch encoder|shape mismatch proj.weight") as e:
        _align(n_channels=5, init_from=str(good_ckpt))  # 5-channel model, 4-channel weights
    assert "proj.weight" in str(e.value)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    return ddp_align.prepare_small_demo(tmp_path_factory.getbasetemp() / "small_demo")


def test_tampered_cache_file_is_refused_without_running_code(small_demo, tmp_path):
    root, cache = small_demo
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    import yaml

    demo = yaml.safe_load((ROOT / "experiments" / "demo.yaml").read_text())["data"]  # the settings it was prepared with
    settings = {k: v for k, v in demo.items() if k not in ("root", "cache_dir")}
    dm = NMEDDataModule(str(root), cache_dir=str(copy), **settings)
    path = dm.cache_path()
    assert (path / "segments.npy").exists()
    marker = tmp_path / "PWNED"
    np.save(path / "segments.npy", np.array([Bomb(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(CacheError, match="segments.npy") as e:
        dm.setup("fit")
    assert str(path / "segments.npy") in str(e.value)
    assert not marker.exists(), "loading the cache ran code"

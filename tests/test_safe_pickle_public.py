"""The allow-listed checkpoint reader through PyTorch's public API (``torch.serialization.safe_globals``): numpy
values come back as saved, other objects as inert placeholders, and a file naming a blocked function runs nothing."""
from __future__ import annotations

import collections
import os
import pickle

import numpy as np
import pytest
import torch

from chanmusic.core.safe_pickle import Refused, contains_refused, load_allowlisted


class _Bomb:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_numpy_values_and_tensors_come_back_other_objects_as_placeholders(tmp_path):
    w = torch.randn(2, 3)
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    torch.save({"state_dict": collections.OrderedDict(w=w), "scalar": np.float64(1.5), "arr": arr,
                "sched": torch.optim.lr_scheduler.StepLR(opt, 3)}, tmp_path / "c.pt")
    obj, refused = load_allowlisted(tmp_path / "c.pt")
    assert torch.equal(obj["state_dict"]["w"], w)
    assert obj["scalar"] == 1.5 and isinstance(obj["scalar"], np.float64)
    assert np.array_equal(obj["arr"], arr) and obj["arr"].dtype == np.float32
    assert "torch.optim.lr_scheduler.StepLR" in refused
    assert isinstance(obj["sched"], Refused) and contains_refused(obj)


def test_a_blocked_function_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"w": torch.zeros(1), "x": _Bomb(str(marker))}, tmp_path / "bomb.pt")
    obj, refused = load_allowlisted(tmp_path / "bomb.pt")  # read again with everything but tensors inert
    assert not marker.exists()
    assert torch.equal(obj["w"], torch.zeros(1)) and contains_refused(obj)
    assert any(name.endswith(".system") for name in refused), refused

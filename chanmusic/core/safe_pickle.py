"""An allow-listed unpickler for checkpoints that hold more than tensors: nothing outside the list is ever called.

``torch.load(weights_only=True)`` refuses a whole file as soon as it names one global outside PyTorch's list,
yet real release files do: official laion-clap ``.pt`` files pickle numpy scalars, and full Lightning saves
(e.g. the official EEGPT ``.ckpt``) keep optimizer and learning-rate-scheduler objects beside the weights.
:func:`load_allowlisted` reads such a file with an unpickler whose ``find_class`` returns

- the real object for the globals of :func:`allowed_globals` (PyTorch's own ``weights_only`` list: tensor and
  storage rebuilders, dtypes, ``OrderedDict``, ``torch.Size`` …, plus numpy's scalar / dtype / array
  rebuilders), all plain constructors;
- for any other global, an inert placeholder class (:class:`Refused`): "calling" it, building it or setting its
  state only records the arguments. No function of the file's choosing runs.

The caller then keeps what it needs (the state dict) and must check that no :class:`Refused` sits where a tensor
should (``chanmusic.core.checkpoints.safe_load`` does).
"""
from __future__ import annotations

import pickle
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch


class Refused:
    """Stands for an object the checkpoint named but that was not built (its class or function is not
    allow-listed). ``name`` is the global it would have been; ``args`` / ``state`` what it would have got."""

    name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "Refused":
        obj = object.__new__(cls)
        obj.args, obj.state, obj.items = args, None, []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def append(self, value: Any) -> None:
        self.items.append(value)

    def extend(self, values: Any) -> None:
        self.items.extend(values)

    def __call__(self, *args: Any, **kwargs: Any) -> "Refused":
        return _placeholder(f"{self.name}(...)")()

    def __repr__(self) -> str:
        return f"<refused {self.name}>"


def _placeholder(name: str) -> type[Refused]:
    return type("Refused", (Refused,), {"name": name})


def _numpy_globals() -> dict[str, Any]:
    from numpy.core import multiarray

    out: dict[str, Any] = {"numpy.dtype": np.dtype, "numpy.ndarray": np.ndarray}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1 and numpy 2 pickles
        out[f"{mod}.scalar"] = multiarray.scalar
        out[f"{mod}._reconstruct"] = multiarray._reconstruct
    for name in ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool_"):
        out[f"numpy.{name}"] = getattr(np, name)
    out.update({f"numpy.dtypes.{type(np.dtype(t)).__name__}": type(np.dtype(t))
                for t in ("f8", "f4", "f2", "i8", "i4", "i2", "i1", "u1", "?")})
    return out


def allowed_globals() -> dict[str, Any]:
    """``"module.name"`` -> object that the unpickler may return: PyTorch's ``weights_only`` allow-list plus numpy's
    scalar, dtype and array rebuilders."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        out = dict(_get_allowed_globals())
    except (ImportError, AttributeError):  # pragma: no cover - a PyTorch without the private list
        from torch._utils import _rebuild_parameter, _rebuild_tensor_v2
        from collections import OrderedDict

        out = {"collections.OrderedDict": OrderedDict, "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
               "torch._utils._rebuild_parameter": _rebuild_parameter, "torch.Size": torch.Size}
    out.update(_numpy_globals())
    return out


class _Unpickler(pickle.Unpickler):
    allowed: dict[str, Any] = {}
    refused: list[str] = []

    def find_class(self, module: str, name: str) -> Any:
        key = f"{module}.{name}"
        if key in self.allowed:
            return self.allowed[key]
        self.refused.append(key)
        return _placeholder(key)


def load_allowlisted(path: str | Path) -> tuple[Any, list[str]]:
    """Load a ``torch.save`` file with the allow-listed unpickler; returns ``(object, refused global names)``.

    Tensors, containers, numbers, strings and allow-listed objects come back as they were saved; every other
    object is a :class:`Refused` placeholder. Raises what ``torch.load`` raises for an unreadable file.
    """
    refused: list[str] = []
    unpickler = type("AllowListUnpickler", (_Unpickler,), {"allowed": allowed_globals(), "refused": refused})
    module = ModuleType("chanmusic_allowlisted_pickle")
    module.Unpickler = unpickler  # type: ignore[attr-defined]
    module.load = lambda fh, **kw: unpickler(fh, **kw).load()  # type: ignore[attr-defined]  # legacy format
    module.__name__ = "pickle"  # torch checks the name only to pick its default encoding
    obj = torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=module)
    return obj, sorted(set(refused))


def contains_refused(obj: Any, depth: int = 0) -> bool:
    """Whether a :class:`Refused` placeholder occurs anywhere in ``obj`` (containers searched)."""
    if isinstance(obj, Refused):
        return True
    if depth > 50:
        return False
    if isinstance(obj, dict):
        return any(contains_refused(k, depth + 1) or contains_refused(v, depth + 1) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return any(contains_refused(v, depth + 1) for v in obj)
    return False


def drop_refused(obj: Any, depth: int = 0) -> Any:
    """``obj`` with every :class:`Refused` placeholder replaced by ``None`` (containers rebuilt)."""
    if isinstance(obj, Refused) or depth > 50:
        return None if isinstance(obj, Refused) else obj
    if isinstance(obj, dict):
        out = type(obj)() if type(obj) in (dict,) or hasattr(type(obj), "move_to_end") else {}
        for k, v in obj.items():
            if not isinstance(k, Refused):
                out[k] = drop_refused(v, depth + 1)
        return out
    if isinstance(obj, list):
        return [drop_refused(v, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(drop_refused(v, depth + 1) for v in obj)
    return obj


def convert_to_tensors(path: str | Path, out: str | Path) -> int:
    """Write the tensors of checkpoint ``path`` (its ``state_dict``, else the top level) to ``out`` as a plain
    state dict, read with :func:`load_allowlisted` (nothing of the file's choosing runs); returns how many."""
    obj, _ = load_allowlisted(path)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else {}
    tensors = {str(k): v for k, v in (sd.items() if isinstance(sd, dict) else ()) if isinstance(v, torch.Tensor)}
    if not tensors:
        raise SystemExit(f"{path}: no tensors found outside refused objects — nothing to convert")
    torch.save(tensors, str(out))
    return len(tensors)


if __name__ == "__main__":  # python -m chanmusic.core.safe_pickle IN.ckpt OUT.pt
    import sys

    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m chanmusic.core.safe_pickle IN.ckpt OUT.pt  (keeps tensors only)")
    print(f"{convert_to_tensors(sys.argv[1], sys.argv[2])} tensors written to {sys.argv[2]}")

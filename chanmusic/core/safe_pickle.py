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


def _scalar(dtype: np.dtype, data: Any = None) -> Any:
    """What numpy's pickled ``multiarray.scalar(dtype, bytes)`` rebuilds, by public numpy calls: a scalar of a
    plain (non-object) dtype from its bytes."""
    dtype = np.dtype(dtype)
    if dtype.hasobject or not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError(f"numpy scalar of dtype {dtype} is not plain data")
    return np.frombuffer(bytes(data), dtype=dtype)[0]


def _reconstruct(subtype: type, shape: Any, dtype: Any) -> np.ndarray:
    """What numpy's pickled ``multiarray._reconstruct`` builds (an empty array, filled by its ``__setstate__``),
    for plain ``ndarray`` only."""
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"numpy array subclass {subtype!r} is not allow-listed")
    return np.ndarray(shape, dtype=np.dtype(dtype))


def _numpy_globals() -> list[tuple[Any, str]]:
    """``(object, "module.name")`` for numpy's scalar, dtype and array rebuilders as numpy 1 and 2 pickle them."""
    out: list[tuple[Any, str]] = [(np.dtype, "numpy.dtype"), (np.ndarray, "numpy.ndarray")]
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1 and numpy 2 pickles
        out += [(_scalar, f"{mod}.scalar"), (_reconstruct, f"{mod}._reconstruct")]
    out += [(getattr(np, n), f"numpy.{n}") for n in ("float64", "float32", "float16", "int64", "int32", "int16",
                                                     "int8", "uint8", "bool_")]
    out += [(type(np.dtype(t)), f"numpy.dtypes.{type(np.dtype(t)).__name__}")
            for t in ("f8", "f4", "f2", "i8", "i4", "i2", "i1", "u1", "?")]
    return out


def load_allowlisted(path: str | Path) -> tuple[Any, list[str]]:
    """Load a ``torch.save`` file with ``torch.load(weights_only=True)``, PyTorch's public allow-list extended
    (``torch.serialization.safe_globals``) by numpy's rebuilders and, for every other global the file names
    (``torch.serialization.get_unsafe_globals_in_checkpoint``), an inert :class:`Refused` placeholder; returns
    ``(object, refused global names)``. No function of the file's choosing runs. Raises what ``torch.load``
    raises for an unreadable file.
    """
    numpy_names = {name for _, name in _numpy_globals()}
    refused = sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path))) - numpy_names)
    extra = _numpy_globals() + [(_placeholder(name), name) for name in refused]
    try:
        with torch.serialization.safe_globals(extra):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # it calls a function torch's reader blocks outright (os.system; getattr in a scheduler's pickle, as in the
        # official EEGPT release): read it again keeping only what rebuilds tensors, every other object inert
        obj = _load_tensors_only(path)
        refused = sorted(set(refused) | set(_refused_names(obj)))
    return obj, refused


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


def _load_tensors_only(path: str | Path) -> Any:
    """``torch.load`` through an unpickler that returns torch's own rebuild functions, ``OrderedDict`` and numpy's
    rebuilders, and an inert :class:`Refused` placeholder for every other global: nothing of the file's choosing
    runs (the placeholder is never called with the file's arguments)."""
    import collections
    import types

    allowed = {name: obj for obj, name in _numpy_globals()}
    allowed["collections.OrderedDict"] = collections.OrderedDict

    class _TensorsOnly(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            key = f"{module}.{name}"
            if key in allowed:
                return allowed[key]
            if module == "torch._utils" and name.startswith("_rebuild_") or module == "torch" and (
                    name.endswith("Storage") or name in ("Size", "device", "dtype")):
                return super().find_class(module, name)
            return _placeholder(key)

    module = types.ModuleType("pickle")  # torch reads the module's name only to pick its default encoding
    module.Unpickler = _TensorsOnly  # type: ignore[attr-defined]
    module.load = lambda fh, **kw: _TensorsOnly(fh, **kw).load()  # type: ignore[attr-defined]
    return torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=module)


def _refused_names(obj: Any, depth: int = 0) -> list[str]:
    """The global names of the :class:`Refused` placeholders in ``obj`` (containers searched)."""
    if isinstance(obj, Refused):
        return [getattr(type(obj), "name", "?")]
    if depth > 50:
        return []
    if isinstance(obj, dict):
        return [n for k, v in obj.items() for x in (k, v) for n in _refused_names(x, depth + 1)]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [n for v in obj for n in _refused_names(v, depth + 1)]
    return []


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

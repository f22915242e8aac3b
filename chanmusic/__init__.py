"""chanmusic: EEG-to-music reconstruction (NMED readers, EEG encoders, CLAP alignment, AudioLDM).

Kept light: :mod:`chanmusic.core` (the bottom layer) imports this package, so nothing heavy is imported here; the
notebook API (``load_run``, ``Run``, ``Embeddings``) is loaded on first use.
"""
from __future__ import annotations

from importlib import import_module
from importlib import metadata as _metadata


def _version() -> str:
    """The installed distribution's version; in a source checkout that is not installed, ``0+unknown``."""
    try:
        return _metadata.version("chanmusic")
    except _metadata.PackageNotFoundError:
        return "0+unknown"


__version__: str = _version()

_LAZY = {"load_run": "chanmusic.results.notebook", "Run": "chanmusic.results.notebook",
         "Embeddings": "chanmusic.results.notebook"}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'chanmusic' has no attribute {name!r}")

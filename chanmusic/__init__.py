"""chanmusic package.

The package root stays light (the bottom layer imports it): the notebook API is loaded on first use.
"""
from importlib import import_module

_LAZY = {"load_run": "chanmusic.results.notebook", "Run": "chanmusic.results.notebook",
         "Embeddings": "chanmusic.results.notebook"}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'chanmusic' has no attribute {name!r}")

"""chanmusic: EEG-to-music reconstruction (NMED readers, EEG encoders, CLAP alignment, AudioLDM).

Kept light: :mod:`chanmusic.core` (the bottom layer) imports this package, so nothing heavy is imported here.
"""
from __future__ import annotations

from importlib import metadata as _metadata


def _version() -> str:
    """The installed distribution's version; in a source checkout that is not installed, ``0+unknown``."""
    try:
        return _metadata.version("chanmusic")
    except _metadata.PackageNotFoundError:
        return "0+unknown"


__version__: str = _version()

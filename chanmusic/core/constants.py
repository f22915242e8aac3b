"""Facts every layer shares: the releases' EEG rate and the data settings' allowed values."""
from __future__ import annotations

NATIVE_SFREQ = 125.0  # both releases' cleaned EEG; expected unless the settings say otherwise
CONTROLS = ("none", "shift", "shuffle")  # the no-music control: none, per-recording circular shift, shuffle
SPLIT_MODES = ("random", "block", "hearing", "subjects", "songs")

"""Which input electrode feeds which channel of a pretrained EEG model.

LaBraM and EEGPT know channels by **name** (a learned embedding per 10-20/10-05 name); CBraMod knows none
but convolves over the channel **order**. NMED's 125 rows are EGI ``GSN-HydroCel-129`` electrodes
(``E1``-``E124`` + ``Cz``), which have no 10-05 names, so this module gives each electrode the name of the
nearest position of a model's vocabulary, and gives CBraMod a spatially coherent order.

Method (deterministic, no randomness, no fitting to data):

1. Positions come from MNE's standard montages: the input electrodes from ``montage``
   (default ``GSN-HydroCel-129``), the vocabulary from ``standard_1005``.
2. Each montage is put in its own fiducial head frame (``get_ras_to_neuromag_trans(nasion, lpa, rpa)``:
   x towards RPA, y towards the nasion, z up), which co-registers the two templates by their fiducials.
3. Each montage is centred on the least-squares sphere fitted to all of its electrodes and projected to the
   unit sphere, so head size and the height of the head centre above the ear line do not matter.
4. An electrode maps to the vocabulary name with the smallest great-circle angle; ties go to the name that
   comes first in the vocabulary order (so ``T7`` wins over its old alias ``T3``). An electrode whose own
   name is in the vocabulary (``Cz``) maps to itself.

Candidates per vocabulary:

- ``"labram"``: braindecode's ``LABRAM_CHANNEL_ORDER`` names that have a ``standard_1005`` position
  (bipolar ``FP1-F7``-style derivations and the few non-10-05 names such as ``CFC1`` are never candidates).
- ``"eegpt"``: the **58** channels EEGPT was pretrained on (its 62-name table minus ``AF7``, ``AF8``,
  ``PO5``, ``PO6``, whose embeddings were never trained; EEGPT ``prepare_pretrain_dataset.py``).
- ``"tueg19"``: CBraMod's 19 pretraining channels in its pretraining order.

With these rules the 125 NMED electrodes land on 60 of the 62 EEGPT names' positions and keep published
EGI equivalents (E11→FZ, Cz→CZ, E36→C3, E104→C4, E62→PZ, E75→OZ, E22→FP1, E9→FP2, E70→O1, E83→O2),
while E45/E108 (often given as T7/T8) land on TP7/TP8: the templates' positions differ by a few degrees.
Several electrodes share one name (position embeddings repeat); ``ChannelMap.nearest()`` keeps one
electrode per name instead. ``python -m encoders.channel_mapping labram`` prints the full table.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from chanmusic.core.electrodes import (DEFAULT_MONTAGE, NMED_CH_NAMES, channel_key, lookup_positions, montage_fiducials,
                              montage_positions)

VOCAB_MONTAGE = "standard_1005"
EEGPT_UNTRAINED = ("AF7", "AF8", "PO5", "PO6")
TUEG19 = ("FP1", "FP2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2",
          "F7", "F8", "T3", "T4", "T5", "T6", "FZ", "CZ", "PZ")


def _fit_sphere(xyz: np.ndarray) -> np.ndarray:
    """Centre of the least-squares sphere through ``xyz [n, 3]``."""
    a = np.c_[2.0 * xyz, np.ones(len(xyz))]
    sol = np.linalg.lstsq(a, (xyz ** 2).sum(1), rcond=None)[0]
    return sol[:3]


@lru_cache(maxsize=8)
def _unit_positions(montage: str) -> dict[str, np.ndarray]:
    """Upper-case name -> unit vector (fiducial head frame, centred on the montage's fitted sphere)."""
    from mne.transforms import apply_trans, get_ras_to_neuromag_trans

    nasion, lpa, rpa = montage_fiducials(montage)
    if nasion is None or lpa is None or rpa is None:
        raise ValueError(f"montage {montage!r} has no fiducials; cannot co-register it")
    trans = get_ras_to_neuromag_trans(nasion, lpa, rpa)
    names, xyz = montage_positions(montage)
    xyz = apply_trans(trans, xyz)
    u = xyz - _fit_sphere(xyz)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return {n.upper(): u[i] for i, n in enumerate(names)}


def vocabulary(name: str | Sequence[str]) -> tuple[str, ...]:
    """Candidate names (upper case, in the model's order) of a vocabulary; see the module docstring."""
    if not isinstance(name, str):
        return tuple(str(n).upper() for n in name)
    known = _unit_positions(VOCAB_MONTAGE)
    if name == "labram":
        from braindecode.models.labram import LABRAM_CHANNEL_ORDER

        return tuple(n.upper() for n in LABRAM_CHANNEL_ORDER if n.upper() in known)
    if name == "eegpt":
        from braindecode.models.eegpt import EEGPT_CHANNELS

        return tuple(n.upper() for n in EEGPT_CHANNELS if n.upper() not in EEGPT_UNTRAINED)
    if name == "tueg19":
        return TUEG19
    raise ValueError(f"unknown vocabulary {name!r}: use 'labram', 'eegpt', 'tueg19' or a list of names")


def electrode_unit_positions(ch_names: Sequence[str], montage: str = DEFAULT_MONTAGE) -> np.ndarray:
    """``[C, 3]`` unit vectors of the input electrodes (``montage`` first, then ``standard_1005``)."""
    return lookup_positions(ch_names, [(montage, _unit_positions(montage)),
                                       (VOCAB_MONTAGE, _unit_positions(VOCAB_MONTAGE))])


def default_ch_names(n_channels: int) -> list[str]:
    """Names to assume when the data gives none: the NMED layout for 125 channels."""
    if n_channels != len(NMED_CH_NAMES):
        raise ValueError(f"{n_channels} channels without ch_names: pass ch_names (only the 125-channel NMED "
                         f"layout E1..E124, Cz is assumed)")
    return list(NMED_CH_NAMES)


@dataclass(frozen=True)
class ChannelMap:
    """Nearest vocabulary name of every input electrode.

    electrodes: input names, input order. targets: the vocabulary name each one feeds.
    angles: great-circle distance (degrees) between the electrode and its name's position.
    vocab: the candidate names.
    """

    vocab_name: str
    electrodes: tuple[str, ...]
    targets: tuple[str, ...]
    angles: tuple[float, ...]
    vocab: tuple[str, ...]

    def as_dict(self) -> dict[str, str]:
        return dict(zip(self.electrodes, self.targets))

    def nearest(self) -> list[int]:
        """One electrode per reachable name (the closest; ties to the lower input index), in vocab order."""
        best: dict[str, int] = {}
        for i, (t, a) in enumerate(zip(self.targets, self.angles)):
            if t not in best or a < self.angles[best[t]]:
                best[t] = i
        return [best[t] for t in self.vocab if t in best]

    def table(self) -> str:
        """Printable table: electrode -> name (angle), then the names that received several electrodes."""
        lines = [f"# {len(self.electrodes)} electrodes -> {len(set(self.targets))} of {len(self.vocab)} "
                 f"{self.vocab_name} names (median {np.median(self.angles):.1f} deg, max {max(self.angles):.1f} deg)"]
        lines += [f"{e:>6} -> {t:<6} {a:5.1f} deg" for e, t, a in zip(self.electrodes, self.targets, self.angles)]
        return "\n".join(lines)


def map_to_vocabulary(ch_names: Sequence[str] | None, vocab: str | Sequence[str] = "labram",
                      montage: str = DEFAULT_MONTAGE, n_channels: int | None = None) -> ChannelMap:
    """Map each electrode to its nearest vocabulary name (module docstring: method)."""
    if ch_names is None:
        ch_names = default_ch_names(n_channels or len(NMED_CH_NAMES))
    names = vocabulary(vocab)
    std = _unit_positions(VOCAB_MONTAGE)
    missing = [n for n in names if n not in std]
    if missing:
        raise ValueError(f"vocabulary names without a {VOCAB_MONTAGE} position: {missing[:10]}")
    v = np.stack([std[n] for n in names])
    u = electrode_unit_positions(ch_names, montage)
    ang = np.degrees(np.arccos(np.clip(u @ v.T, -1.0, 1.0)))
    targets, angles = [], []
    index = {n: j for j, n in enumerate(names)}
    for i, ch in enumerate(ch_names):
        key = channel_key(ch)
        j = index[key] if key in index else int(np.argmin(ang[i]))  # argmin: first of equal minima
        targets.append(names[j])
        angles.append(0.0 if key in index else float(round(ang[i, j], 3)))
    label = vocab if isinstance(vocab, str) else "custom"
    return ChannelMap(label, tuple(str(c) for c in ch_names), tuple(targets), tuple(angles), names)


def spatial_order(ch_names: Sequence[str] | None, montage: str = DEFAULT_MONTAGE,
                  n_channels: int | None = None) -> list[int]:
    """A spatially coherent channel order (indices into ``ch_names``) for models that convolve over channels.

    Electrodes are laid out like a topomap (azimuthal equidistant projection from the vertex), cut into
    ``round(sqrt(C))`` rows of equal size from front to back, and read left-to-right then right-to-left
    on alternate rows (boustrophedon), so consecutive channels are neighbours on the scalp. Stable sorts
    make it deterministic.
    """
    if ch_names is None:
        ch_names = default_ch_names(n_channels or len(NMED_CH_NAMES))
    u = electrode_unit_positions(ch_names, montage)
    theta = np.arccos(np.clip(u[:, 2], -1.0, 1.0))
    phi = np.arctan2(u[:, 1], u[:, 0])
    # rounded: midline electrodes tie at x = 0 up to ulp noise that differs between numpy builds; stable sorts
    # then break ties by index, so the order is the same everywhere
    x, y = np.round(theta * np.cos(phi), 9), np.round(theta * np.sin(phi), 9)
    n_rows = max(1, int(round(np.sqrt(len(u)))))
    front_to_back = np.argsort(-y, kind="stable")
    order: list[int] = []
    for r, row in enumerate(np.array_split(front_to_back, n_rows)):
        row = row[np.argsort(x[row], kind="stable")]
        order += [int(i) for i in (row if r % 2 == 0 else row[::-1])]
    return order


def order_step_degrees(ch_names: Sequence[str], order: Sequence[int], montage: str = DEFAULT_MONTAGE) -> float:
    """Mean angle (degrees) between consecutive electrodes of ``order``: small = coherent."""
    u = electrode_unit_positions([ch_names[i] for i in order], montage)
    return float(np.degrees(np.arccos(np.clip((u[:-1] * u[1:]).sum(1), -1.0, 1.0))).mean())


def main(argv: Sequence[str] | None = None) -> None:
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    vocab = args[0] if args else "labram"
    if vocab == "order":
        names = list(NMED_CH_NAMES)
        order = spatial_order(names)
        print(f"# CBraMod channel order ({order_step_degrees(names, order):.1f} deg mean step; "
              f"EGI numbering {order_step_degrees(names, range(len(names))):.1f} deg)")
        print(" ".join(names[i] for i in order))
        return
    print(map_to_vocabulary(None, vocab).table())


if __name__ == "__main__":
    main()

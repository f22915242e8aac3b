"""EGI electrode -> pretrained-model channel mapping: known pairs, stability, CBraMod order."""
from __future__ import annotations

import hashlib
import json

import pytest

from encoders.channel_mapping import TUEG19, main, map_to_vocabulary, order_step_degrees, spatial_order, vocabulary
from chanmusic.core.electrodes import NMED_CH_NAMES

NAMES = list(NMED_CH_NAMES)
# published EGI HydroCel-128 10-20 equivalents that the geometric mapping reproduces
KNOWN = {"Cz": "CZ", "E36": "C3", "E104": "C4", "E62": "PZ", "E75": "OZ", "E22": "FP1", "E9": "FP2",
         "E70": "O1", "E83": "O2", "E24": "F3", "E124": "F4", "E33": "F7", "E122": "F8", "E58": "P7",
         "E96": "P8", "E6": "FCZ", "E55": "CPZ"}


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj).encode()).hexdigest()[:16]


@pytest.mark.parametrize("vocab", ["labram", "eegpt"])
def test_known_pairs(vocab):
    m = map_to_vocabulary(NAMES, vocab).as_dict()
    assert {k: m[k] for k in KNOWN} == KNOWN
    assert m["E11"] in ("FZ", "AFZ")  # frontal midline, between Fz and AFz on the templates
    assert m["E45"] in ("T7", "TP7") and m["E108"] in ("T8", "TP8")


def test_snapshot_of_the_full_mapping():
    """Which electrode feeds which model channel; a change here changes every LaBraM/EEGPT/CBraMod result."""
    lab, gpt = map_to_vocabulary(NAMES, "labram"), map_to_vocabulary(NAMES, "eegpt")
    assert lab.as_dict()["E11"] == "AFZ" and gpt.as_dict()["E11"] == "FZ"
    assert (len(set(lab.targets)), len(set(gpt.targets))) == (83, 58)
    assert _digest(lab.as_dict()) == "c74c9c48fa2273de", lab.table()
    assert _digest(gpt.as_dict()) == "8258475589b3d25b", gpt.table()
    tueg = map_to_vocabulary(NAMES, "tueg19")
    assert [tueg.electrodes[i] for i in tueg.nearest()] == [
        "E22", "E9", "E24", "E124", "E36", "E104", "E60", "E85", "E70", "E83",
        "E33", "E122", "E39", "E115", "E50", "E96", "E12", "Cz", "E62"]
    assert _digest(spatial_order(NAMES)) == "5c8df8257fbcc3a4"  # ties broken by index (rounded positions)


def test_deterministic_and_default_names():
    a, b = map_to_vocabulary(NAMES, "eegpt"), map_to_vocabulary(None, "eegpt", n_channels=125)
    assert a == b and spatial_order(NAMES) == spatial_order(None)
    with pytest.raises(ValueError, match="ch_names"):
        map_to_vocabulary(None, "eegpt", n_channels=64)


def test_vocabularies():
    eegpt = vocabulary("eegpt")
    assert len(eegpt) == 58 and not {"AF7", "AF8", "PO5", "PO6"} & set(eegpt)  # untrained embeddings excluded
    lab = vocabulary("labram")
    assert "FP1-F7" not in lab and "T7" in lab and lab.index("T7") < lab.index("T3")
    assert vocabulary("tueg19") == TUEG19
    m = map_to_vocabulary(NAMES, "labram")
    assert set(m.targets) <= set(lab) and all(0 <= a < 30 for a in m.angles)
    with pytest.raises(ValueError, match="vocabulary"):
        vocabulary("bogus")


def test_names_in_the_vocabulary_map_to_themselves_and_unknown_names_fail():
    m = map_to_vocabulary(["Fz", "cz", "E129", "E11"], "eegpt")
    assert m.targets[:3] == ("FZ", "CZ", "CZ") and m.angles[:3] == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="no position"):
        map_to_vocabulary(["E1", "XYZ"], "eegpt")


def test_nearest_keeps_one_electrode_per_name():
    m = map_to_vocabulary(NAMES, "eegpt")
    idx = m.nearest()
    assert len(idx) == len(set(m.targets)) == len({m.targets[i] for i in idx})
    for i in idx:  # the kept electrode is the closest of those sharing its name
        assert m.angles[i] == min(a for t, a in zip(m.targets, m.angles) if t == m.targets[i])


def test_spatial_order_is_a_coherent_permutation():
    order = spatial_order(NAMES)
    assert sorted(order) == list(range(125))
    coherent, numbering = order_step_degrees(NAMES, order), order_step_degrees(NAMES, range(125))
    assert coherent < 0.8 * numbering
    assert NAMES[order[0]] in ("E32", "E25", "E22", "E21", "E17", "E14") and NAMES[order[-1]] not in ("E11", "E16")


def test_table_is_printable(capsys):
    main(["eegpt"])
    out = capsys.readouterr().out
    assert out.startswith("# 125 electrodes -> 58 of 58 eegpt names") and "    Cz -> CZ       0.0 deg" in out
    main(["order"])
    assert "CBraMod channel order" in capsys.readouterr().out

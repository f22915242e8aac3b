"""BIDS-EEG datasets (``--data.dataset bids``): a tiny tree written with mne-bids in the test, ``chanmusic fit``
then ``test`` on it end to end, and the trees chanmusic refuses (no ``stim_file`` column, a missing stimulus)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import mne
import numpy as np
import pytest
import soundfile

from chanmusic.cli import main

ROOT = Path(__file__).resolve().parent.parent
CHANNELS = ["Fz", "Cz", "Pz", "Oz", "C3", "C4", "P3", "P4"]
SFREQ, SONG_S, ONSETS = 125.0, 20.0, (1.0, 22.0, 43.0)
STIMULI = ["calm.wav", "drums.wav", "hum.wav"]


def write_bids_tree(root: Path, subjects=("01", "02"), stim_column: bool = True) -> Path:
    """Two subjects hearing three 20-s stimuli in one run each (BrainVision, written by mne-bids); the EEG follows
    each stimulus's envelope on a few channels so there is something to align; stimuli/ holds the audio."""
    from mne_bids import BIDSPath, write_raw_bids

    rng = np.random.default_rng(0)
    (root / "stimuli").mkdir(parents=True, exist_ok=True)
    sr = 16000
    t = np.arange(int(SONG_S * sr)) / sr
    envelopes = []
    for k, name in enumerate(STIMULI):
        env = 0.5 + 0.5 * np.sin(2 * np.pi * (0.3 + 0.4 * k) * t)
        soundfile.write(root / "stimuli" / name, (0.3 * env * np.sin(2 * np.pi * (220 * (k + 1)) * t)).astype(
            np.float32), sr)
        envelopes.append(env[:: int(sr / SFREQ)][: int(SONG_S * SFREQ)])
    n = int((ONSETS[-1] + SONG_S + 2) * SFREQ)
    for sub in subjects:
        eeg = rng.normal(0, 10e-6, (len(CHANNELS), n))
        for k, onset in enumerate(ONSETS):
            s = int(onset * SFREQ)
            eeg[k:k + 3, s:s + len(envelopes[k])] += 20e-6 * envelopes[k]
        raw = mne.io.RawArray(eeg, mne.create_info(CHANNELS, SFREQ, "eeg"), verbose="error")
        raw.set_annotations(mne.Annotations(list(ONSETS), [SONG_S] * 3, [f"music/{Path(s).stem}" for s in STIMULI]))
        path = BIDSPath(subject=sub, task="listen", datatype="eeg", root=root)
        write_raw_bids(raw, path, format="BrainVision", allow_preload=True, overwrite=True, verbose=False)
        events = path.copy().update(suffix="events", extension=".tsv").fpath
        with open(events, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        cols = list(rows[0]) + (["stim_file"] if stim_column else [])
        with open(events, "w", newline="") as f:
            w = csv.DictWriter(f, cols, delimiter="\t", extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({**r, "stim_file": r["trial_type"].split("/")[1] + ".wav"})
    return root


@pytest.fixture(scope="module")
def bids_root(tmp_path_factory):
    return write_bids_tree(tmp_path_factory.mktemp("bids") / "ds")


@pytest.fixture(scope="module", autouse=True)
def unbound_afterwards():
    """The tree's songs leave the song table after these tests (other tests in this process see NMED's only)."""
    yield
    from datamodules import registry

    ds = registry.get_dataset("bids")
    for attr in ("songs", "ch_names", "sfreq"):
        ds.__dict__.pop(attr, None)
    ds.__init__()
    registry._changed()


def test_the_tree_reads_as_recordings_of_its_stimuli(bids_root):
    from datamodules.protocol import RecordingRequest
    from datamodules.registry import bind_roots, get_dataset
    from datamodules.songs import SONGS

    bind_roots("bids", bids_root)
    ds = get_dataset("bids")
    assert list(ds.ch_names) == CHANNELS and ds.sfreq == SFREQ
    assert [s.title for s in SONGS if s.dataset == "bids"] == ["calm", "drums", "hum"]
    recs = list(ds.recordings(bids_root, RecordingRequest()))
    assert [(r.subject, r.stimulus) for r in recs] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    assert all(r.eeg.shape == (8, int(SONG_S * SFREQ)) for r in recs)
    # µV, cut at the onset: the envelope added on channels k..k+2 of stimulus k is there from the first sample
    from mne_bids import BIDSPath, read_raw_bids

    raw = read_raw_bids(BIDSPath(subject="01", task="listen", datatype="eeg", root=bids_root), verbose="error")
    s = int(ONSETS[1] * SFREQ)
    np.testing.assert_allclose(recs[1].eeg, raw.get_data()[:, s:s + int(SONG_S * SFREQ)] * 1e6, rtol=1e-5,
                               atol=1e-3)
    assert ds.audio_path(bids_root / "stimuli", recs[1].stimulus) == bids_root / "stimuli" / "drums.wav"


def test_fit_then_test_on_a_bids_tree(bids_root, tmp_path):
    runs = tmp_path / "runs"
    common = ["--data.dataset", "bids", "--data.root", str(bids_root), "--data.task", "listen",
              "--data.cache_dir", str(tmp_path / "cache"), "--data.window_s", "2.0", "--data.batch_size", "16",
              "--data.test_fraction", "0.333333333333", "--data.val_fraction", "0.5",
              # 4-s spans: 5 per 20-s recording, a third of them test = 1.67, rounded to 1 or 2 (datamodules/splits:
              # systematic rounding over a subject), so every stimulus has test windows. With the default 8-s spans
              # a recording has 2 spans, a subject 2/3 x 3 = 2 test spans for 3 stimuli, so one stimulus per subject
              # had none and, as the draws fell, song_id came out 2-way.
              "--data.span_s", "4"]
    main(["fit", "--config", str(ROOT / "experiments/demo.yaml"), "--config", str(ROOT / "experiments/align/default.yaml"),
          "--config", str(ROOT / "experiments/encoders/linear_reference.yaml"), *common,
          "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(runs),
          "--trainer.logger.init_args.save_dir", str(runs), "--trainer.enable_progress_bar", "false"])
    fit_dir = max(runs.glob("demo/version_*"), key=lambda p: int(p.name.split("_")[1]))
    main(["test", "--config", str(fit_dir / "config.yaml"), "--ckpt_path", str(fit_dir / "checkpoints" / "last.ckpt")])
    test_dir = max(runs.glob("demo/version_*"), key=lambda p: int(p.name.split("_")[1]))
    m = json.loads((test_dir / "metrics.json").read_text())
    # identification among the tree's three stimuli, every metric formed
    assert m["song_id"]["n_way"] == 3 and m["song_id"]["chance"] == pytest.approx(1 / 3)
    assert 0.0 <= m["id50"]["mean"] <= 1.0 and m["id50"]["n"] > 0
    manifest = json.loads(next((tmp_path / "cache").glob("bids-*/manifest.json")).read_text())
    assert manifest["n_recordings"] == 6 and manifest["settings"]["task"] == "listen"


@pytest.mark.parametrize("damage, message", [
    ("no_column", r"sub-01_task-listen_events\.tsv: no stim_file column — chanmusic needs to know what was played"),
    ("missing", r"sub-01_task-listen_events\.tsv: stim_file drums\.wav does not exist \(.*stimuli/drums\.wav\) — "
                r"put the audio in the dataset's stimuli/ folder"),
])
def test_bad_trees_are_one_line(tmp_path, capsys, damage, message):
    root = write_bids_tree(tmp_path / "ds", subjects=("01",), stim_column=damage != "no_column")
    if damage == "missing":
        (root / "stimuli" / "drums.wav").unlink()
    with pytest.raises(SystemExit) as e:
        main(["prepare", "--config", str(ROOT / "experiments/demo.yaml"), "--data.dataset", "bids",
              "--data.root", str(root), "--data.cache_dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    import re

    assert re.search(r"^chanmusic: error: .*" + message, err[0]), err[0]

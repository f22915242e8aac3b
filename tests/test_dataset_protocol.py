"""A dataset added through the protocol (docs/datasets.md): a toy dataset in a tiny folder, with its own channels,
rate, songs and audio names, registered in the dataset table, then ``chanmusic fit`` + ``test`` on it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datamodules.protocol import DataFormatError, MusicEEGDataset, SongInfo
from datamodules.registry import dataset_code, names, register, subject_offset, unregister

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("one_thread")


class Toy(MusicEEGDataset):
    """Eight 10-20 channels at 100 Hz in ``eeg.npz`` (one array ``s<subject>_<stimulus>`` each); audio ``toneN.wav``."""

    name, code, file_pattern = "toy", 3, "eeg.npz"
    songs = (SongInfo(1, "Drone", "Toy", "ambient"), SongInfo(2, "Pulse", "Toy", "techno"))
    ch_names = ("Fz", "Cz", "Pz", "Oz", "C3", "C4", "O1", "O2")
    sfreq = 100.0

    def recordings(self, root, request):
        with np.load(root / "eeg.npz") as arrays:
            for key in sorted(arrays.files):
                subject, stimulus = (int(v) for v in key[1:].split("_"))
                yield self.recording(subject, stimulus, arrays[key], source=f"{root / 'eeg.npz'}::{key}")

    def audio_path(self, audio_root, stimulus):
        path = Path(audio_root) / f"tone{stimulus}.wav"
        if not path.is_file():
            raise DataFormatError(f"{path}: no audio for toy stimulus {stimulus} — write tone{stimulus}.wav")
        return path

    def audio_files(self, audio_root):
        return sorted(Path(audio_root).glob("tone*.wav"))


def write_toy(root: Path, seconds: float = 40.0) -> Path:
    """Three subjects × two songs of noise EEG that follows each song's loudness a little, and the songs."""
    import soundfile as sf

    g = np.random.default_rng(0)
    (root / "stimuli").mkdir(parents=True)
    arrays = {}
    for stim in (1, 2):
        sr = 16000
        t = np.arange(int((seconds + 1) * sr)) / sr
        loud = 0.5 + 0.5 * np.sin(2 * np.pi * t * (0.3 + 0.2 * stim) + g.uniform(0, 6)) ** 2
        audio = 0.3 * loud * np.sin(2 * np.pi * (110 * stim) * t) + 0.02 * g.standard_normal(t.size)
        sf.write(str(root / "stimuli" / f"tone{stim}.wav"), audio.astype(np.float32), sr)
        envelope = loud[:: sr // 100][: int(seconds * 100)]
        for subject in (1, 2, 3):
            eeg = 10 * g.standard_normal((8, envelope.size)) + 5 * envelope[None] * g.standard_normal((8, 1))
            arrays[f"s{subject}_{stim}"] = eeg.astype(np.float32)
    np.savez(root / "eeg.npz", **arrays)
    return root


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    register(Toy())
    yield write_toy(tmp_path_factory.mktemp("toy") / "toy")
    unregister("toy")


def test_the_table_places_the_toy_after_the_releases(toy_root):
    from datamodules.songs import GENRES, SONGS

    assert names() == ("nmed-t", "nmed-h", "toy", "bids") and dataset_code("toy") == 3 and subject_offset("toy") == 2000
    assert [s.index for s in SONGS if s.dataset == "toy"] == [14, 15] and {"ambient", "techno"} <= set(GENRES)
    with pytest.raises(ValueError, match="code 3 is not a free"):
        register(type("Other", (Toy,), {"name": "other"})())


def test_fit_and_test_on_the_toy(toy_root, tmp_path):
    from chanmusic.cli import main
    from datamodules.datamodule import NMEDDataModule

    dm = NMEDDataModule(str(toy_root), dataset="toy", cache_dir=str(tmp_path / "cache"))
    assert (dm.ch_names, dm.sfreq, dm.n_times) == (list(Toy.ch_names), 100.0, 200)
    runs = tmp_path / "runs"
    main(["fit", "--config", str(ROOT / "experiments/demo.yaml"),
          "--config", str(ROOT / "experiments/align/default.yaml"),
          "--config", str(ROOT / "experiments/encoders/linear_reference.yaml"), "--data.root", str(toy_root),
          "--data.dataset", "toy", "--data.cache_dir", str(tmp_path / "cache"), "--data.batch_size", "16",
          "--data.test_fraction", "0.333333333333", "--data.val_fraction", "0.5", "--trainer.max_epochs", "1",
          "--trainer.default_root_dir", str(runs), "--trainer.logger.init_args.save_dir", str(runs),
          "--trainer.enable_progress_bar", "false"])
    fit_dir = max(runs.glob("demo/version_*"), key=lambda p: int(p.name.split("_")[1]))
    main(["test", "--config", str(fit_dir / "config.yaml"), "--ckpt_path", str(fit_dir / "checkpoints/last.ckpt")])
    test_dir = max(runs.glob("demo/version_*"), key=lambda p: int(p.name.split("_")[1]))
    m = json.loads((test_dir / "metrics.json").read_text())
    assert m["song_id"]["n_way"] == 2 and m["genre_id"]["n_way"] == 2
    recs = json.loads(next((tmp_path / "cache").glob("toy-*/recordings.json")).read_text())
    assert sorted({r["subject_id"] for r in recs}) == [2001, 2002, 2003]


def test_the_cli_knows_a_dataset_named_in_chanmusic_datasets(toy_root, tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "toy_plugin.py").write_text("from test_dataset_protocol import Toy\n"
                                            "from datamodules.registry import register\n\nregister(Toy())\n")
    env = {**os.environ, "CHANMUSIC_DATASETS": "toy_plugin", "TQDM_DISABLE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), str(tmp_path)])}
    cmd = [sys.executable, "-m", "chanmusic.cli", "prepare", "--data.root", str(toy_root), "--data.dataset", "toy",
           "--data.cache_dir", str(tmp_path / "cache"), "--data.songs", "[15]"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "[prepare] 3 recordings" in out.stdout
    env["CHANMUSIC_DATASETS"] = "no_such_plugin"
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "chanmusic: error: $CHANMUSIC_DATASETS: no module 'no_such_plugin'" in out.stderr

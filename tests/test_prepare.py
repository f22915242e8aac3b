"""prepare -> cache -> data module: cache rules, batch contract, leakage-free split, safe loading, RAM."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.cache import CacheError, PreparedCache
from datamodules.datamodule import NMEDDataModule
from datamodules.synthetic import write_demo


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "nmed-t"
    write_demo(root, seed=0, n_subjects=2, duration_s=40.0, songs=[0, 1, 2])
    return root


def _dm(root, cache, **kw):
    kw = {"window_s": 2.0, "batch_size": 8, "test_fraction": 0.1, "val_fraction": 0.1, **kw}
    return NMEDDataModule(str(root), cache_dir=str(cache), **kw)


def test_prepare_builds_then_reuses_then_rebuilds(small_demo, tmp_path, capsys):
    dm = _dm(small_demo, tmp_path)
    dm.prepare_data()
    path = dm.cache_path()
    man = json.loads((path / "manifest.json").read_text())
    assert man["n_recordings"] == 2 * 3
    assert man["n_segments"] == 2 * 3 * 20  # 40 s / 2 s windows
    assert man["n_music"] == 3 * 20  # the same song window heard by two subjects is one music segment
    assert man["clap_is_random"] is True
    assert "RANDOM" in man["clap"].upper()
    out = capsys.readouterr().out
    assert "building cache" in out
    mtime = (path / "manifest.json").stat().st_mtime_ns
    dm2 = _dm(small_demo, tmp_path)
    dm2.prepare_data()  # same settings: no work
    assert (path / "manifest.json").stat().st_mtime_ns == mtime
    dm3 = _dm(small_demo, tmp_path, window_s=1.0)  # changed setting: a new cache
    assert dm3.cache_path() != path
    dm3.prepare_data()
    assert json.loads((dm3.cache_path() / "manifest.json").read_text())["n_segments"] == 2 * 3 * 40


def test_batches_follow_the_contract(small_demo, tmp_path):
    dm = _dm(small_demo, tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert b["eeg"].shape == (8, 125, 250) and b["eeg"].dtype == torch.float32
    assert b["clap"].shape == (8, 512) and torch.allclose(b["clap"].norm(dim=1), torch.ones(8), atol=1e-4)
    assert b["mel"].shape[:2] == (8, 64)
    assert b["channel_mask"].shape == (8, 125) and b["channel_mask"].dtype == torch.bool
    for k in ("song", "subject", "segment", "music", "genre", "stimulus", "start", "length"):
        assert b[k].shape == (8,)
    assert dm.ch_names[:2] == ["E1", "E2"] and dm.ch_names[-1] == "Cz" and dm.n_channels == 125
    assert dm.montage is not None and len(dm.song_names) == 14 and len(dm.genres) == 10
    # the eeg window equals the cached, preprocessed recording slice
    cache = PreparedCache.open(dm.cache_path())
    i = int(b["segment"][0])
    rec, _, _, start, length, _ = cache.segments[i]
    off = cache.recordings[rec]["offset"]
    assert np.allclose(cache.recording_eeg(rec)[:, start: start + length], b["eeg"][0].numpy())


def test_control_keeps_eeg_and_breaks_pairing(small_demo, tmp_path):
    # 20-s recordings: a 4-s minimum shift (the 30-s default needs 60 s); a 1.9-s hop keeps 120 BPM off whole bars
    kw = {"stride_s": 1.9, "control_min_shift_s": 4.0}
    real, ctrl = _dm(small_demo, tmp_path, **kw), _dm(small_demo, tmp_path, control="shift", **kw)
    for d in (real, ctrl):
        d.prepare_data()
        d.setup("fit")
    assert np.array_equal(real.split.train, ctrl.split.train)
    seg = real.cache.segments
    changed = real.music_of_row != ctrl.music_of_row
    assert changed.all()  # every window gets another window's audio
    music = real.cache.music
    # ... from the same stimulus (same song, same recording's EEG)
    assert np.array_equal(music[real.music_of_row, 0], music[ctrl.music_of_row, 0])
    a = real.dataset_for("train")[0]
    b = ctrl.dataset_for("train")[0]
    assert torch.equal(a["eeg"], b["eeg"]) and not torch.equal(a["clap"], b["clap"])
    assert a["song"] == b["song"] and a["subject"] == b["subject"]


def test_truncated_or_tampered_cache_is_a_clear_error(small_demo, tmp_path):
    dm = _dm(small_demo, tmp_path)
    dm.prepare_data()
    path = dm.cache_path()
    eeg = path / "eeg.f32"
    data = eeg.read_bytes()
    eeg.write_bytes(data[: len(data) // 2])
    with pytest.raises(CacheError, match="truncated"):
        PreparedCache.open(path)
    eeg.write_bytes(data)
    np.save(path / "segments.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CacheError, match="segments.npy"):
        PreparedCache.open(path)


def test_prepare_data_needs_no_cli(small_demo, tmp_path):
    """As in a notebook: a fresh process builds the cache through the data module alone (its own CLAP)."""
    code = ("import sys; from datamodules.datamodule import NMEDDataModule; "
            f"dm = NMEDDataModule({str(small_demo)!r}, cache_dir={str(tmp_path)!r}, songs=[0]); dm.prepare_data(); "
            "assert 'chanmusic.cli' not in sys.modules; print(dm.cache_path())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert (Path(out.stdout.split()[-1]) / "manifest.json").is_file()


class _FirstSamples:
    """A stand-in audio embedder: the first 512 samples of each clip, normalised."""

    description, is_random = "first 512 samples", False

    def embed(self, wav: torch.Tensor, sr: int) -> torch.Tensor:
        return torch.nn.functional.normalize(wav[:, :512] + 1e-3, dim=-1)


def test_prepare_data_takes_an_embedder(small_demo, tmp_path):
    dm = _dm(small_demo, tmp_path, songs=[1])
    dm.prepare_data(embedder=_FirstSamples())
    man = json.loads((dm.cache_path() / "manifest.json").read_text())
    assert man["clap"] == "first 512 samples" and man["clap_is_random"] is False


def test_bad_data_settings_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="data.dataset"):
        NMEDDataModule(str(tmp_path), dataset="nmed-x")
    with pytest.raises(ValueError, match="data.root"):
        NMEDDataModule(str(tmp_path / "absent")).prepare_settings()
    with pytest.raises(ValueError, match=r"--data\.root: no song\*_Imputed\.mat files"):
        NMEDDataModule(str(tmp_path)).prepare_settings()  # a folder without release files


_RSS_SCRIPT = textwrap.dedent('''
    import sys
    from datamodules.datamodule import NMEDDataModule
    dm = NMEDDataModule(sys.argv[1], cache_dir=sys.argv[2], window_s=2.0, batch_size=32)
    dm.prepare_data()
    if sys.argv[3] == "prepare":
        sys.exit(0)
    def hwm_kb():  # this process's own peak RSS (ru_maxrss would include the parent's peak across exec)
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    dm.setup("fit")
    base = hwm_kb()
    n = 0
    for part in ("train", "val", "test"):
        for b in getattr(dm, part + "_dataloader")():
            n += len(b["eeg"])
    print(n, base, hwm_kb())
''')


@pytest.mark.slow
def test_memmap_keeps_ram_flat_as_data_grows(tmp_path):
    """A full pass over a 4x larger data set stays within +50 MB of the 1x peak RSS."""
    peaks = []
    for scale in (1, 4):
        root = tmp_path / f"x{scale}"
        write_demo(root, seed=0, n_subjects=scale, duration_s=40.0, songs=[0, 1, 2])
        _dm(root, tmp_path / "cache", batch_size=32).prepare_data()  # prepared here; measured in a fresh process
        args = [sys.executable, "-c", _RSS_SCRIPT, str(root), str(tmp_path / "cache")]
        out = subprocess.run(args + ["pass"], capture_output=True, text=True, check=True)
        n, base, peak = map(int, out.stdout.split()[-3:])
        peaks.append((n, base, peak))
    (n1, _, p1), (n4, _, p4) = peaks
    assert n4 >= 3.5 * n1
    # a fresh process that only reads the prepared cache: its peak must not grow with the data
    assert (p4 - p1) / 1024 < 50, peaks

"""The literature-based tracking set (datamodules.synthetic_tracking): its files read back through the NMED-T reader,
the SNR it realises is the knob's, song identity is decodable across subjects from band power only when the music
response is on, and a seed fixes every byte."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile
from sklearn.linear_model import RidgeClassifier

from datamodules.nmed import read_recordings
from datamodules.songs import song_of
from datamodules.synthetic_tracking import measure_snr, write_synthetic_tracking

LAYOUT = dict(subjects=(2, 3, 4), stimuli=(21, 23, 25, 27, 29), duration_s=16.0)


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    """A strong-response set (0 dB) and its no-music twin (same seed, response off)."""
    base = tmp_path_factory.mktemp("tracking")
    return {"music": write_synthetic_tracking(base / "music", seed=3, snr_db=0.0, **LAYOUT),
            "none": write_synthetic_tracking(base / "none", seed=3, snr_db=None, **LAYOUT)}


def _by_key(root: Path) -> dict:
    return {(r.subject, r.stimulus): r for r in read_recordings(root, "nmed-t")}


def test_files_read_back_as_nmed_t(sets):
    recs = _by_key(sets["music"])
    assert sorted(recs) == sorted((s, n) for s in LAYOUT["subjects"] for n in LAYOUT["stimuli"])
    for (subject, stimulus), rec in recs.items():
        assert rec.eeg.shape == (125, 2000) and rec.sfreq == 125.0
        assert rec.song == song_of("nmed-t", stimulus).index
        assert np.all(np.isfinite(rec.eeg)) and 3.0 < float(rec.eeg.std()) < 200.0  # µV scale
        assert np.abs(rec.eeg.mean(axis=0)).max() < 1e-3 * rec.eeg.std()  # average reference
    for stimulus in LAYOUT["stimuli"]:
        sr, audio = wavfile.read(sets["music"] / "stimuli" / f"song{stimulus}.wav")
        assert len(audio) / sr >= LAYOUT["duration_s"] and audio.std() > 0


def test_release_filters_removed_line_noise_and_drift(sets):
    rec = next(iter(_by_key(sets["none"]).values()))
    freqs = np.fft.rfftfreq(rec.eeg.shape[1], 1 / rec.sfreq)
    power = (np.abs(np.fft.rfft(rec.eeg.astype(float), axis=1)) ** 2).mean(0)
    band = lambda lo, hi: power[(freqs >= lo) & (freqs < hi)].mean()
    assert band(59.5, 60.5) < 1e-3 * band(8, 12)      # 60 Hz notched and low-passed away
    assert band(0.0, 0.1) < band(1.0, 2.0)            # drift high-passed at 0.3 Hz


def _snr_by_hand(music: np.ndarray, none: np.ndarray) -> float:
    """The documented definition, written out here: response = music − none; responding channels carry at least half
    the largest channel's response power; ratio of summed powers over them."""
    resp = music.astype(np.float64) - none.astype(np.float64)
    p_resp = (resp ** 2).mean(1)
    rows = p_resp >= 0.5 * p_resp.max()
    return 10 * np.log10(p_resp[rows].sum() / (none.astype(np.float64)[rows] ** 2).mean(1).sum())


@pytest.mark.parametrize("knob", [-9.0, -16.0])
def test_measured_snr_matches_the_knob(tmp_path, knob):
    layout = dict(subjects=(5,), stimuli=(22, 30), duration_s=12.0)
    music = write_synthetic_tracking(tmp_path / "m", seed=1, snr_db=knob, **layout)
    none = write_synthetic_tracking(tmp_path / "n", seed=1, snr_db=None, **layout)
    m, n = _by_key(music), _by_key(none)
    by_hand = [_snr_by_hand(m[k].eeg, n[k].eeg) for k in m]
    assert np.allclose(by_hand, knob, atol=1.0), by_hand
    measured = measure_snr(music, none)
    assert abs(measured["mean_db"] - knob) < 1.0
    assert np.allclose(sorted(measured["per_recording"].values()), sorted(by_hand), atol=1e-6)


def _band_power_features(root: Path, window_s: float = 4.0):
    """Per 4-s window: the log power spectrum summed over channels (0.5-20 Hz), z-scored per window."""
    X, y, groups = [], [], []
    for rec in read_recordings(root, "nmed-t"):
        n = int(window_s * rec.sfreq)
        freqs = np.fft.rfftfreq(n, 1 / rec.sfreq)
        keep = (freqs >= 0.5) & (freqs <= 20.0)
        for i in range(rec.eeg.shape[1] // n):
            w = rec.eeg[:, i * n:(i + 1) * n].astype(np.float64) * np.hanning(n)
            v = np.log((np.abs(np.fft.rfft(w, axis=1)) ** 2).sum(0)[keep])
            X.append((v - v.mean()) / v.std())
            y.append(rec.song)
            groups.append(rec.subject)
    return np.array(X), np.array(y), np.array(groups)


def _leave_one_subject_out_accuracy(root: Path) -> float:
    X, y, groups = _band_power_features(root)
    hits = 0
    for s in np.unique(groups):
        clf = RidgeClassifier(alpha=10.0).fit(X[groups != s], y[groups != s])
        hits += int((clf.predict(X[groups == s]) == y[groups == s]).sum())
    return hits / len(y)


def test_song_decodable_across_subjects_only_with_the_response(sets):
    chance = 1 / len(LAYOUT["stimuli"])  # 60 test windows: chance 0.2 ± 0.05
    off = _leave_one_subject_out_accuracy(sets["none"])
    on = _leave_one_subject_out_accuracy(sets["music"])
    assert off < chance + 0.16, off
    assert on > 0.6, on


def test_a_seed_fixes_every_byte(tmp_path):
    layout = dict(subjects=(2,), stimuli=(24,), duration_s=10.0)
    a = write_synthetic_tracking(tmp_path / "a", seed=7, **layout)
    b = write_synthetic_tracking(tmp_path / "b", seed=7, **layout)
    c = write_synthetic_tracking(tmp_path / "c", seed=8, **layout)
    for name in ("stimuli/song24.wav", "ground_truth.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    eeg = {k: next(iter(read_recordings(root, "nmed-t"))).eeg for k, root in (("a", a), ("b", b), ("c", c))}
    assert np.array_equal(eeg["a"], eeg["b"])  # the .mat header holds a timestamp; the arrays must be identical
    assert not np.allclose(eeg["a"], eeg["c"])


def test_refuses_to_overwrite_an_existing_set(tmp_path):
    layout = dict(subjects=(2,), stimuli=(24,), duration_s=10.0)
    write_synthetic_tracking(tmp_path, seed=0, **layout)
    with pytest.raises(FileExistsError):
        write_synthetic_tracking(tmp_path, seed=0, **layout)


def test_the_response_is_tagged_at_each_songs_beat_rate(sets):
    """Frequency tagging: the response (music set − its no-music twin) peaks at the tempo NMED-T's table gives."""
    from datamodules.nmed.songs import NMEDT_SONGS

    music, none = _by_key(sets["music"]), _by_key(sets["none"])
    for (subject, stimulus), rec in music.items():
        resp = rec.eeg.astype(np.float64) - none[(subject, stimulus)].eeg
        freqs = np.fft.rfftfreq(resp.shape[1], 1 / rec.sfreq)
        power = (np.abs(np.fft.rfft(resp, axis=1)) ** 2).sum(0)
        beat_hz = next(s.bpm for s in NMEDT_SONGS if s.number == stimulus) / 60.0
        at_beat = power[np.abs(freqs - beat_hz) <= 0.07].max()
        near = power[(np.abs(freqs - beat_hz) > 0.2) & (np.abs(freqs - beat_hz) < 0.6)]
        assert at_beat > 5 * np.median(near), (subject, stimulus)


def test_overwrite_leaves_no_file_of_the_earlier_set(tmp_path):
    write_synthetic_tracking(tmp_path, seed=0, subjects=(2,), stimuli=(24, 25), duration_s=10.0)
    write_synthetic_tracking(tmp_path, seed=0, subjects=(2,), stimuli=(26,), duration_s=10.0, overwrite=True)
    assert sorted(p.name for p in tmp_path.glob("song*_Imputed.mat")) == ["song26_Imputed.mat"]
    assert sorted(p.name for p in (tmp_path / "stimuli").iterdir()) == ["song26.wav"]

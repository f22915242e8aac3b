"""NMED-T / NMED-H readers: layouts, filters, v7.3 files, audio, and one clear error per kind of bad input."""
from __future__ import annotations

import io
import shutil
import zipfile

import numpy as np
import pytest
import scipy.io
import soundfile as sf

from datamodules.nmed import (NMED_CH_NAMES, NMEDFormatError, Recording, audio_duration, audio_path,
                              check_audio_covers, nmed_montage, read_audio, read_recordings)

T = 250  # 2 s at 125 Hz


def _data(n_subjects=2, t=T, seed=0):
    return (10.0 * np.random.default_rng(seed).standard_normal((125, t, n_subjects))).astype(np.float32)


def _write_t(root, number=21, data=None, subs=None, fs=125.0, omit=(), extra=None):
    """A song<number>_Imputed.mat in the NMED-T layout; returns its path."""
    root.mkdir(parents=True, exist_ok=True)
    data = _data() if data is None else data
    subs = np.arange(2, 2 + data.shape[-1], dtype=np.float64)[None, :] if subs is None else subs
    variables = {f"data{number}": data, f"subs{number}": subs, "fs": np.array([[fs]])}
    variables.update(extra or {})
    for k in omit:
        variables.pop(k.format(n=number))
    path = root / f"song{number}_Imputed.mat"
    scipy.io.savemat(str(path), variables)
    return path


def _read(root, dataset="nmed-t", **kw):
    return list(read_recordings(root, dataset, **kw))


def _raises(match_file, fn, *args, **kw):
    with pytest.raises(NMEDFormatError) as info:
        fn(*args, **kw)
    msg = str(info.value)
    assert str(match_file) in msg, msg
    return msg


# ----------------------------------------------------------------------------------- basics
def test_channel_names_and_montage():
    assert len(NMED_CH_NAMES) == 125 and NMED_CH_NAMES[0] == "E1" and NMED_CH_NAMES[-1] == "Cz"
    assert NMED_CH_NAMES[-2] == "E124"
    mont = nmed_montage()
    assert mont.ch_names == list(NMED_CH_NAMES)
    pos = mont.get_positions()["ch_pos"]
    assert np.allclose(pos["Cz"][:2], 0.0) and pos["Cz"][2] > 0.05


def test_reads_v5_values_untouched(tmp_path):
    data = _data(3)
    _write_t(tmp_path, 23, data=data, subs=np.array([[7.0, 3.0, 12.0]]))
    recs = _read(tmp_path)
    assert [r.subject for r in recs] == [7, 3, 12]
    for s, r in enumerate(recs):
        assert isinstance(r, Recording)
        assert r.song == 2 and r.stimulus == 23 and r.dataset == "nmed-t" and r.sfreq == 125.0
        np.testing.assert_array_equal(r.eeg, data[:, :, s])
        assert r.eeg.dtype == np.float32 and r.duration_s == T / 125.0
    # float64 files come back as float32 values of the same numbers
    data64 = _data(2).astype(np.float64) * 1.000001
    _write_t(tmp_path, 21, data=data64)
    r = _read(tmp_path, stimuli=[21])[0]
    np.testing.assert_array_equal(r.eeg, data64[:, :, 0].astype(np.float32))


def test_string_subject_ids_and_single_subject(tmp_path):
    subs = np.empty((1, 2), dtype=object)
    subs[0, 0], subs[0, 1] = "S02", "S05"
    _write_t(tmp_path, 21, subs=subs)
    assert [r.subject for r in _read(tmp_path)] == [2, 5]
    # MATLAB stores a 125 x T x 1 array as 125 x T
    one = _data(1)[:, :, 0]
    _write_t(tmp_path, 22, data=one, subs=np.array([[9.0]]))
    r = [r for r in _read(tmp_path) if r.stimulus == 22]
    assert len(r) == 1 and r[0].subject == 9
    np.testing.assert_array_equal(r[0].eeg, one)


def _write_v73(path, data, subs, fs=125.0, number=21):
    """An HDF5 file laid out as MATLAB v7.3 writes it (512-byte header block, axes reversed)."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        d = f.create_dataset(f"data{number}", data=np.ascontiguousarray(data.transpose(2, 1, 0)))
        d.attrs["MATLAB_class"] = np.bytes_("single")
        s = f.create_dataset(f"subs{number}", data=np.asarray(subs, dtype=np.float64).reshape(-1, 1))
        s.attrs["MATLAB_class"] = np.bytes_("double")
        g = f.create_dataset("fs", data=np.array([[fs]]))
        g.attrs["MATLAB_class"] = np.bytes_("double")
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .".ljust(116))


def test_reads_v73_hdf5(tmp_path):
    data = _data(3)
    _write_v73(tmp_path / "song21_Imputed.mat", data, [4, 5, 6])
    recs = _read(tmp_path)
    assert [r.subject for r in recs] == [4, 5, 6]
    for s, r in enumerate(recs):
        np.testing.assert_array_equal(r.eeg, data[:, :, s])


def test_filters(demo_root):
    recs = _read(demo_root, songs=[0, 1])
    assert {r.song for r in recs} == {0, 1}
    recs = _read(demo_root, subjects=[2], stimuli=[25, 26])
    assert {r.subject for r in recs} == {2} and {r.stimulus for r in recs} == {25, 26}
    _raises("[99]", _read, demo_root, subjects=[99])
    _raises("nmed-t", _read, demo_root, songs=[12])
    _raises(str(demo_root), _read, demo_root, stimuli=[31])
    # wrong dataset for the folder gets a hint
    msg = _raises(str(demo_root), _read, demo_root, "nmed-h")
    assert "nmed-t" in msg


def test_expected_sfreq(tmp_path):
    _write_t(tmp_path, 21, fs=125.0)
    assert _read(tmp_path, expected_sfreq=125)
    msg = _raises("song21_Imputed.mat", _read, tmp_path, expected_sfreq=250)
    assert "250" in msg


# ------------------------------------------------------------------------------- bad inputs
def test_missing_root_and_empty_root(tmp_path):
    msg = _raises(tmp_path / "nope", _read, tmp_path / "nope")
    assert "song21_Imputed.mat" in msg
    (tmp_path / "empty").mkdir()
    msg = _raises(tmp_path / "empty", _read, tmp_path / "empty")
    assert "song21_Imputed.mat" in msg and "song30_Imputed.mat" in msg
    msg = _raises(tmp_path / "empty", _read, tmp_path / "empty", "nmed-h")
    assert "CleanEEG_aggregatedByStimulus_" in msg


def test_missing_variable_lists_found(tmp_path):
    path = _write_t(tmp_path, 21, omit=["subs{n}"], extra={"other": np.zeros(3)})
    msg = _raises(path, _read, tmp_path)
    assert "subs21" in msg and "data21" in msg and "other" in msg
    shutil.rmtree(tmp_path)
    path = _write_t(tmp_path, 21, omit=["fs"])
    msg = _raises(path, _read, tmp_path)
    assert "'fs'" in msg


def test_transposed_array(tmp_path):
    path = _write_t(tmp_path, 21, data=_data(2).transpose(1, 0, 2))  # T x 125 x S
    msg = _raises(path, _read, tmp_path)
    assert "axis 1" in msg and "transposed" in msg
    path = _write_t(tmp_path, 21, data=_data(2).transpose(2, 1, 0))  # S x T x 125 (h5py-style)
    msg = _raises(path, _read, tmp_path)
    assert "axis 2" in msg


def test_subject_axis_mismatch(tmp_path):
    path = _write_t(tmp_path, 21, data=_data(3), subs=np.array([[1.0, 2.0]]))
    msg = _raises(path, _read, tmp_path)
    assert "subs21" in msg and "2 participants" in msg
    path = _write_t(tmp_path, 21, data=_data(3, t=400).transpose(0, 2, 1), subs=np.array([[1.0, 2.0, 3.0]]))
    msg = _raises(path, _read, tmp_path)
    assert "swapped" in msg


def test_wrong_channel_count(tmp_path):
    data = np.zeros((129, T, 2), np.float32)
    path = _write_t(tmp_path, 21, data=data)
    msg = _raises(path, _read, tmp_path)
    assert "129 rows" in msg and "E125" in msg


def test_nan_and_inf(tmp_path):
    data = _data(3)
    data[5, 10:14, 1] = np.nan
    data[0, 0, 2] = np.inf
    path = _write_t(tmp_path, 21, data=data, subs=np.array([[4.0, 5.0, 6.0]]))
    msg = _raises(path, _read, tmp_path)
    assert "participant 5" in msg and "4 values" in msg and "participant 6" in msg and "1 values" in msg
    assert "participant 4" not in msg


def test_bad_fs(tmp_path):
    for fs in (0.0, -125.0, np.nan):
        path = _write_t(tmp_path, 21, fs=fs)
        _raises(path, _read, tmp_path)
    path = _write_t(tmp_path, 21, extra={"fs": np.array([[125.0, 125.0]])})
    _raises(path, _read, tmp_path)
    # inconsistent across files
    _write_t(tmp_path, 21, fs=125.0)
    path = _write_t(tmp_path, 22, fs=250.0)
    msg = _raises(path, _read, tmp_path)
    assert "song21_Imputed.mat" in msg


def test_unknown_song_number(tmp_path):
    _write_t(tmp_path, 21)
    path = _write_t(tmp_path, 31)
    msg = _raises(path, _read, tmp_path)
    assert "31" in msg


def test_duplicate_subjects(tmp_path):
    path = _write_t(tmp_path, 21, subs=np.array([[3.0, 3.0]]))
    _raises(path, _read, tmp_path)


def test_truncated_and_corrupt_files(tmp_path):
    path = _write_t(tmp_path, 21)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    msg = _raises(path, _read, tmp_path)
    assert "truncated or corrupt" in msg
    path.write_bytes(b"\x00garbage" * 100)
    _raises(path, _read, tmp_path)
    path.write_bytes(b"")
    _raises(path, _read, tmp_path)
    # a damaged HDF5 (v7.3) file
    _write_v73(path, _data(2), [1, 2])
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    _raises(path, _read, tmp_path)


def test_subject_filter_matching_nothing(tmp_path):
    _write_t(tmp_path, 21)
    msg = _raises(str(tmp_path), _read, tmp_path, subjects=[42])
    assert "[42]" in msg and "[2, 3]" in msg


# ------------------------------------------------------------------------------------ NMED-H
def _write_h(root, cond="orig", members=None):
    """An NMED-H archive; ``members`` maps member basename -> variables dict."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"CleanEEG_aggregatedByStimulus_{cond}.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, variables in members.items():
            buf = io.BytesIO()
            scipy.io.savemat(buf, variables)
            zf.writestr(f"CleanEEG_aggregatedByStimulus_{cond}/{name}", buf.getvalue())
    return path


def _h_vars(number, hearing, data, subs):
    return {f"data{number}_{hearing}": data, f"subs{number}_{hearing}": subs, "fs": np.array([[125.0]])}


def test_nmed_h_reader(tmp_path):
    da, db = _data(2, seed=1), _data(2, seed=2)
    subs = np.array([[11.0, 12.0]])
    _write_h(tmp_path, "orig", {"song22_a_Imputed.mat": _h_vars(22, "a", da, subs),
                                "song22_b_Imputed.mat": _h_vars(22, "b", db, subs)})
    _write_h(tmp_path, "rev", {"song26_a_Imputed.mat": _h_vars(26, "a", da, subs)})
    recs = _read(tmp_path, "nmed-h")
    assert [(r.stimulus, r.hearing, r.subject, r.condition) for r in recs] == [
        (22, "a", 11, "orig"), (22, "a", 12, "orig"), (22, "b", 11, "orig"), (22, "b", 12, "orig"),
        (26, "a", 11, "rev"), (26, "a", 12, "rev")]
    assert {r.song for r in recs} == {11}
    np.testing.assert_array_equal(recs[2].eeg, db[:, :, 0])
    assert recs[0].source.endswith("CleanEEG_aggregatedByStimulus_orig.zip::"
                                   "CleanEEG_aggregatedByStimulus_orig/song22_a_Imputed.mat")
    assert len(_read(tmp_path, "nmed-h", conditions=("rev",))) == 2
    _raises("CleanEEG_aggregatedByStimulus_meas.zip", _read, tmp_path, "nmed-h", conditions=("meas",))


def test_nmed_h_bad_inputs(tmp_path):
    subs = np.array([[1.0, 2.0]])
    # missing variable inside a member: the message names zip and member
    path = _write_h(tmp_path / "a", "orig", {"song21_a_Imputed.mat": {"data21_a": _data(2), "fs": 125.0}})
    msg = _raises(path, _read, tmp_path / "a", "nmed-h")
    assert "song21_a_Imputed.mat" in msg and "subs21_a" in msg
    # a stimulus numbered for another condition
    _write_h(tmp_path / "b", "orig", {"song25_a_Imputed.mat": _h_vars(25, "a", _data(2), subs)})
    msg = _raises("song25_a_Imputed.mat", _read, tmp_path / "b", "nmed-h")
    assert "'rev'" in msg
    # unknown stimulus number
    _write_h(tmp_path / "c", "orig", {"song40_a_Imputed.mat": _h_vars(40, "a", _data(2), subs)})
    _raises("song40_a_Imputed.mat", _read, tmp_path / "c", "nmed-h")
    # NaN inside a member
    d = _data(2)
    d[0, 0, 0] = np.nan
    _write_h(tmp_path / "d", "orig", {"song21_b_Imputed.mat": _h_vars(21, "b", d, subs)})
    msg = _raises("song21_b_Imputed.mat", _read, tmp_path / "d", "nmed-h")
    assert "participant 1" in msg
    # a corrupt archive
    (tmp_path / "e").mkdir()
    bad = tmp_path / "e" / "CleanEEG_aggregatedByStimulus_orig.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    _raises(bad, _read, tmp_path / "e", "nmed-h")
    # an archive without the expected members
    path = _write_h(tmp_path / "f", "orig", {"readme.mat": {"x": np.zeros(2)}})
    _raises(path, _read, tmp_path / "f", "nmed-h")


# -------------------------------------------------------------------------------------- audio
def _rec(n_samples=T, stimulus=21):
    return Recording("nmed-t", 1, 0, np.zeros((125, n_samples), np.float32), 125.0, NMED_CH_NAMES,
                     stimulus=stimulus, source="x/song21_Imputed.mat")


def test_audio_files(tmp_path):
    sr = 8000
    t = np.arange(3 * sr) / sr
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1).astype(np.float32) * 0.5
    sf.write(tmp_path / "song21.wav", stereo, sr)
    sf.write(tmp_path / "song22.flac", stereo[:, 0], sr)
    assert audio_path(tmp_path, 21).name == "song21.wav"
    assert audio_path(tmp_path, 22).name == "song22.flac"
    assert audio_duration(audio_path(tmp_path, 21)) == pytest.approx(3.0)
    x, got_sr = read_audio(tmp_path, 21)
    assert got_sr == sr and x.dtype == np.float32 and x.shape == (3 * sr,)
    np.testing.assert_allclose(x, stereo.mean(axis=1), atol=1e-4)  # mono = channel mean
    y, got_sr = read_audio(tmp_path, 22, target_sr=16000)
    assert got_sr == 16000 and abs(y.size - 6 * sr) <= 1
    assert check_audio_covers(_rec(125 * 3), audio_root=tmp_path) == pytest.approx(3.0)


def test_audio_errors(tmp_path):
    msg = _raises(tmp_path / "none", audio_path, tmp_path / "none", 21)
    assert "song21.wav" in msg
    tmp_path.joinpath("song22.wav").write_bytes(b"")
    msg = _raises(tmp_path, audio_path, tmp_path, 21)
    assert "song21.wav" in msg and "song21.mp3" in msg
    _raises("song22.wav", read_audio, tmp_path, 22)
    _raises("song22.wav", audio_duration, tmp_path / "song22.wav")
    sf.write(tmp_path / "song21.wav", np.zeros(8000, np.float32), 8000)  # 1 s of audio
    msg = _raises("song21.wav", check_audio_covers, _rec(125 * 2), audio_root=tmp_path)
    assert "x/song21_Imputed.mat" in msg and "1.000 s" in msg
    with pytest.raises(NMEDFormatError):
        check_audio_covers(_rec(125 * 2), 1.5)
    assert check_audio_covers(_rec(125 * 2), 1.5, tolerance_s=0.5) == 1.5


def test_demo_audio_too_short(tmp_path, demo_root):
    """A demo set whose audio was trimmed: the check names the audio file and the recording."""
    audio_root = tmp_path / "stimuli"
    audio_root.mkdir()
    x, sr = read_audio(demo_root / "stimuli", 21)
    sf.write(audio_root / "song21.wav", x[: sr * 5], sr)
    rec = _read(demo_root, stimuli=[21])[0]
    msg = _raises(audio_root / "song21.wav", check_audio_covers, rec, audio_root=audio_root)
    assert "song21_Imputed.mat" in msg

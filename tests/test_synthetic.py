"""The NMED-format demo generator: round trip through the readers, determinism, the no-music control,
and that the music response is there (weak) while the noise carries per-recording fingerprints."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from datamodules.nmed import (NMED_CH_NAMES, audio_duration, audio_path, check_audio_covers, read_audio,
                              read_recordings)
from datamodules.songs import SONGS
from datamodules.synthetic import FEATURE_NAMES, DemoGenerator, audio_features, song_bpm, synth_song, write_demo
from datamodules.synthetic.response import BANDS


# ------------------------------------------------------------------------------------ round trip
def _manifest(root):
    return json.loads((root / "chanmusic_demo.json").read_text())


def test_round_trip_nmed_t(demo_root):
    recs = list(read_recordings(demo_root, "nmed-t"))
    gen = DemoGenerator.from_manifest(demo_root)
    n = gen.n_samples
    assert len(recs) == 10 * gen.n_subjects
    assert sorted({r.song for r in recs}) == list(range(10))
    assert sorted({r.stimulus for r in recs}) == list(range(21, 31))
    assert {r.subject for r in recs} == set(range(1, gen.n_subjects + 1))
    for r in recs:
        assert r.dataset == "nmed-t" and r.condition == "orig" and r.hearing == "a"
        assert r.eeg.shape == (125, n) and r.eeg.dtype == np.float32 and r.eeg.flags.c_contiguous
        assert r.ch_names == list(NMED_CH_NAMES) and r.sfreq == 125.0
        assert r.source.endswith(f"song{r.stimulus}_Imputed.mat")
        np.testing.assert_array_equal(r.eeg, gen.eeg(r.subject, r.stimulus))
    # realistic magnitude: tens of µV
    med = np.median([np.median(r.eeg.std(axis=1)) for r in recs])
    assert 8.0 < med < 40.0, med
    assert _manifest(demo_root)["dataset"] == "nmed-t"


def test_subject_order_is_shuffled_per_file_and_read_by_id(demo_root):
    gen = DemoGenerator(dataset="nmed-t", seed=0, n_subjects=4, duration_s=1.0)
    orders = {tuple(gen.listeners(s)) for s in gen.stimuli}
    assert len(orders) > 1  # the reader must map by id, never by position


def test_audio_written_and_covers_eeg(demo_root):
    gen = DemoGenerator.from_manifest(demo_root)
    recs = list(read_recordings(demo_root, "nmed-t", songs=[0, 9]))
    for r in recs:
        path = audio_path(demo_root / "stimuli", r.stimulus)
        assert path.name == f"song{r.stimulus}.wav"
        assert audio_duration(path) >= r.duration_s
        check_audio_covers(r, audio_root=demo_root / "stimuli")
        audio, sr = read_audio(demo_root / "stimuli", r.stimulus)
        assert sr == 16000 and audio.dtype == np.float32 and audio.ndim == 1
        ref = gen.audio(r.stimulus)
        assert audio.shape == ref.shape
        assert np.abs(audio - ref).max() < 2.0 / 32768  # 16-bit PCM


def test_round_trip_nmed_h(demo_root_h):
    recs = list(read_recordings(demo_root_h, "nmed-h"))
    gen = DemoGenerator.from_manifest(demo_root_h)
    n_sub = gen.n_subjects
    # each subject hears each of the 4 songs once (one condition, Latin square), twice (a and b)
    assert len(recs) == n_sub * 4 * 2
    assert sorted({r.song for r in recs}) == [10, 11, 12, 13]
    assert {r.condition for r in recs} == {"orig", "rev"}
    assert {r.hearing for r in recs} == {"a", "b"}
    for sid in range(1, n_sub + 1):
        mine = [r for r in recs if r.subject == sid]
        assert sorted({r.song for r in mine}) == [10, 11, 12, 13]
        assert len(mine) == 8
    for r in recs:
        assert r.eeg.shape == (125, gen.n_samples) and r.eeg.dtype == np.float32
        assert "::CleanEEG_aggregatedByStimulus_" in r.source and f"_{r.hearing}_Imputed.mat" in r.source
        expected_cond = "orig" if r.stimulus <= 24 else "rev"
        assert r.condition == expected_cond
        np.testing.assert_array_equal(r.eeg, gen.eeg(r.subject, r.stimulus, r.hearing))
    # hearings a and b: same person and music, different noise
    by_key = {(r.subject, r.stimulus, r.hearing): r.eeg for r in recs}
    for (sid, stim, h), x in by_key.items():
        if h == "a":
            assert not np.array_equal(x, by_key[(sid, stim, "b")])
    # rev = time-reversed audio of the base song
    np.testing.assert_array_equal(gen.audio(25), gen.audio(21)[::-1])
    with zipfile.ZipFile(demo_root_h / "CleanEEG_aggregatedByStimulus_orig.zip") as zf:
        assert "CleanEEG_aggregatedByStimulus_orig/song21_a_Imputed.mat" in zf.namelist()
    for stim in range(21, 29):
        assert (demo_root_h / "stimuli" / f"song{stim}.wav").exists()


def test_nmed_h_filters(demo_root_h):
    recs = list(read_recordings(demo_root_h, "nmed-h", conditions=("orig",), hearings=("b",)))
    assert recs and all(r.condition == "orig" and r.hearing == "b" for r in recs)
    recs = list(read_recordings(demo_root_h, "nmed-h", stimuli=[26]))
    assert {r.stimulus for r in recs} == {26} and {r.song for r in recs} == {11}


# ----------------------------------------------------------------------------------- determinism
def test_deterministic_under_seed():
    a = DemoGenerator(seed=3, duration_s=8.0, n_subjects=2)
    b = DemoGenerator(seed=3, duration_s=8.0, n_subjects=2)
    c = DemoGenerator(seed=4, duration_s=8.0, n_subjects=2)
    np.testing.assert_array_equal(a.eeg(1, 22), b.eeg(1, 22))
    assert not np.array_equal(a.eeg(1, 22), c.eeg(1, 22))
    np.testing.assert_array_equal(a.audio(22), c.audio(22))  # songs do not depend on the seed
    assert not np.array_equal(a.eeg(1, 22), a.eeg(2, 22))


def test_write_is_deterministic(tmp_path):
    kw = dict(seed=1, n_subjects=1, duration_s=4.0, songs=[2])
    r1 = write_demo(tmp_path / "a", **kw)
    r2 = write_demo(tmp_path / "b", **kw)
    # bytes after the 128-byte MAT header (whose text holds the creation time)
    assert (r1 / "song23_Imputed.mat").read_bytes()[128:] == (r2 / "song23_Imputed.mat").read_bytes()[128:]
    assert (r1 / "stimuli" / "song23.wav").read_bytes() == (r2 / "stimuli" / "song23.wav").read_bytes()


# ------------------------------------------------------------------------------ no-music control
def test_music_off_differs_only_by_response(tmp_path):
    kw = dict(seed=0, n_subjects=2, duration_s=8.0, songs=[0, 4])
    on = DemoGenerator(**kw)
    off = DemoGenerator(music_response=False, **kw)
    for sid, stim in [(1, 21), (2, 25)]:
        p_on, p_off = on.parts(sid, stim), off.parts(sid, stim)
        np.testing.assert_array_equal(p_on.noise, p_off.noise)
        assert not p_off.response.any()
        assert p_on.response.any()
        diff = on.eeg(sid, stim).astype(np.float64) - off.eeg(sid, stim).astype(np.float64)
        np.testing.assert_allclose(diff, p_on.response, atol=1e-4)
        np.testing.assert_array_equal(off.eeg(sid, stim), p_on.noise.astype(np.float32))
    # the response sits only on the map's electrodes
    p = on.parts(1, 21)
    responding = np.union1d(on.map.pl_channels, on.map.ind_channels)
    silent = np.setdiff1d(np.arange(125), responding)
    assert not p.response[silent].any()
    # written control data = the same noise
    root = write_demo(tmp_path / "ctrl", music_response=False, **kw)
    for r in read_recordings(root, "nmed-t"):
        np.testing.assert_array_equal(r.eeg, off.eeg(r.subject, r.stimulus))
    assert json.loads((root / "chanmusic_demo.json").read_text())["music_response"] is False


# ------------------------------------------------------------------------------- the response
@pytest.fixture(scope="module")
def gen60():
    return DemoGenerator(seed=0, n_subjects=2, duration_s=60.0, songs=[0, 5])


def _best_lagged_corr(x, e, lags):
    return max(abs(np.corrcoef(x[lag:], e[:-lag])[0, 1]) for lag in lags)


def test_phase_locked_response_follows_envelope(gen60):
    env = gen60.features(21)[FEATURE_NAMES.index("envelope")]
    p = gen60.parts(1, 21)
    lags = range(6, 33)  # 50-250 ms at 125 Hz
    chans = gen60.map.pl_channels
    on = np.median([_best_lagged_corr(p.noise[c] + p.response[c], env, lags) for c in chans])
    off = np.median([_best_lagged_corr(p.noise[c], env, lags) for c in chans])
    assert on > off + 0.03, (on, off)
    # weak: single electrodes are far from the response
    corr = [np.corrcoef(p.noise[c] + p.response[c], p.response[c])[0, 1] for c in chans]
    assert np.median(corr) < 0.35


def test_snr_in_documented_range(gen60):
    m = gen60.map
    pl, ind = [], []
    ind_only = np.setdiff1d(m.ind_channels, m.pl_channels)
    for sid in (1, 2):
        for stim in (21, 26):
            p = gen60.parts(sid, stim)
            snr = 10 * np.log10((p.response ** 2).mean(1) / (p.noise ** 2).mean(1) + 1e-30)
            pl += [s for s in snr[m.pl_channels] if s > -100]  # -inf: a flat channel
            ind += list(snr[ind_only])
    assert -20.0 < np.median(pl) < -12.0, np.median(pl)
    assert np.median(ind) < -15.0
    frac = len(m.pl_channels) / 125
    assert 0.4 <= frac <= 0.6


def test_induced_response_is_band_power(gen60):
    """On induced-only electrodes the music shows in band power, not in the raw waveform."""
    m = gen60.map
    p = gen60.parts(1, 21)
    a = gen60.induced_modulation(1, 21)
    f = np.fft.rfftfreq(p.noise.shape[1], 1 / 125.0)
    env = gen60.features(21)[0]

    def band_power(x, band):
        lo, hi = BANDS[band]
        spec = np.fft.rfft(x)
        spec[(f < lo) | (f > hi)] = 0
        return np.convolve(np.fft.irfft(spec, n=x.size) ** 2, np.ones(25) / 25, "same")

    on, off, lin = [], [], []
    pl = set(m.pl_channels.tolist())
    for j, c in enumerate(m.ind_channels):
        if c in pl:
            continue
        on.append(np.corrcoef(band_power(p.noise[c] + p.response[c], m.ind_band[j]), a[j] ** 2)[0, 1])
        off.append(np.corrcoef(band_power(p.noise[c], m.ind_band[j]), a[j] ** 2)[0, 1])
        lin.append(abs(np.corrcoef(p.response[c], env)[0, 1]))
    assert np.median(on) > np.median(off) + 0.1, (np.median(on), np.median(off))
    assert np.median(lin) < 0.05  # invisible to a linear map of the waveform


def test_response_map_signs_lags_and_subjects(gen60):
    m = gen60.map
    signs = np.sign(m.pl_weights.sum(axis=1))
    assert (signs > 0).any() and (signs < 0).any()
    assert 0.25 < (signs > 0).mean() < 0.75
    assert m.pl_lag_s.min() >= 0.05 and m.pl_lag_s.max() <= 0.25
    s1, s2 = m.for_subject(0, 1), m.for_subject(0, 2)
    assert np.array_equal(s1.pl_channels, s2.pl_channels)
    assert np.corrcoef(s1.pl_weights.ravel(), s2.pl_weights.ravel())[0, 1] > 0.8
    assert not np.array_equal(s1.pl_weights, s2.pl_weights)
    # the same subject's responses in two hearings are identical; other subjects' are similar, not equal
    p1, p2 = gen60.parts(1, 21), gen60.parts(2, 21)
    c = [np.corrcoef(p1.response[ch], p2.response[ch])[0, 1] for ch in m.pl_channels[:20]]
    assert np.median(c) > 0.5


def test_recording_fingerprints():
    """Noise has a per-session layout and a per-recording signature (what the no-music control measures)."""
    gen = DemoGenerator(seed=0, n_subjects=3, duration_s=20.0, music_response=False)
    prof = {(s, st): np.log(gen.eeg(s, st).var(axis=1) + 1e-6) for s in (1, 2, 3) for st in (21, 22, 23)}
    keys = list(prof)
    same, diff = [], []
    for i in range(len(keys)):
        for j in range(i + 1, len(keys)):
            c = np.corrcoef(prof[keys[i]], prof[keys[j]])[0, 1]
            assert c < 0.99  # every recording differs
            (same if keys[i][0] == keys[j][0] else diff).append(c)
    assert np.mean(same) > np.mean(diff) + 0.1


# ------------------------------------------------------------------------------------- music
def test_songs_distinct_and_varied():
    bpms = [song_bpm(s.index) for s in SONGS]
    assert len(set(bpms)) == 14
    assert all(song_bpm(i) == SONGS[i].bpm for i in range(10))
    sr, dur = 8000, 30.0
    feats = {}
    for s in (0, 3, 9, 12):
        a = synth_song(s, dur, sr)
        assert a.dtype == np.float32 and a.shape == (int(dur * sr),)
        assert np.isfinite(a).all() and 0 < np.abs(a).max() <= 1.0
        np.testing.assert_array_equal(a, synth_song(s, dur, sr))
        f = audio_features(a, sr, 125.0, int(dur * 125))
        assert f.shape == (len(FEATURE_NAMES), int(dur * 125)) and np.isfinite(f).all()
        # windows of one song differ from each other (2-s window means vary)
        w = f.reshape(len(FEATURE_NAMES), -1, 250).mean(axis=2)
        assert w.std(axis=1).max() > 0.3
        win = f[:, :250], f[:, 1000:1250]
        assert np.corrcoef(win[0].ravel(), win[1].ravel())[0, 1] < 0.95
        feats[s] = a
    assert np.corrcoef(feats[0][:80000], feats[3][:80000])[0, 1] < 0.5


def test_write_demo_validates_arguments(tmp_path):
    with pytest.raises(ValueError):
        write_demo(tmp_path, dataset="nmed-h", conditions=("phase",), duration_s=2.0)
    with pytest.raises(ValueError):
        write_demo(tmp_path, songs=[12], duration_s=2.0)  # an NMED-H song in the NMED-T layout

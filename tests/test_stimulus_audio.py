"""Stimulus audio without librosa: soundfile reads mp3 (libsndfile >= 1.1), its length comes from the header, and a
file it cannot read is one line naming the file and the fix."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from datamodules.recording import DataFormatError
from datamodules.stimulus_audio import audio_duration, read_audio_file
from tooling.uninstalled import run_uninstalled


def _tone(sr: int, seconds: float, f: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32)


def test_mp3_is_read_by_soundfile_without_librosa(tmp_path):
    assert "MP3" in sf.available_formats(), f"libsndfile {sf.__libsndfile_version__} reads no mp3"
    path = tmp_path / "song21.mp3"
    sr = 44100
    sf.write(str(path), np.stack([_tone(sr, 3.0), -_tone(sr, 3.0, 220.0)], 1), sr, format="MP3")
    r = run_uninstalled(
        "from datamodules.stimulus_audio import audio_duration, read_audio_file\n"
        "from datamodules.input_checks import read_channels\n"
        f"a, sr = read_audio_file({str(path)!r}, target_sr=16000)\n"
        f"c, _ = read_channels({str(path)!r})\n"
        f"print(audio_duration({str(path)!r}), sr, len(a), c.shape[1])\n")
    assert r.returncode == 0, r.stderr[-3000:]
    seconds, sr_out, n, channels = r.stdout.split()
    assert float(seconds) == pytest.approx(3.0, abs=1e-3)
    assert (int(sr_out), int(n), int(channels)) == (16000, 48000, 2)
    # the decoded mono mix is the encoded mix (mp3 is lossy: compare the 440 Hz amplitude, not samples)
    a, _ = read_audio_file(path)
    ref = (_tone(sr, 3.0) - _tone(sr, 3.0, 220.0)) / 2
    spec, spec_ref = np.abs(np.fft.rfft(a[:sr])), np.abs(np.fft.rfft(ref[:sr]))
    assert spec[440] == pytest.approx(spec_ref[440], rel=0.05) and spec[220] == pytest.approx(spec_ref[220], rel=0.05)


@pytest.mark.parametrize("reader", [read_audio_file, audio_duration])
def test_unreadable_audio_is_one_line_with_the_fix(tmp_path, reader):
    path = tmp_path / "song22.mp3"
    path.write_bytes(b"not audio at all " * 64)
    with pytest.raises(DataFormatError) as e:
        reader(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "convert it to WAV or FLAC" in msg

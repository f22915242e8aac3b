"""The settings of the dipole generator (:class:`DipoleConfig`), checked once, and the seeding rule.

Every random draw comes from its own stream, ``numpy.random.default_rng([seed, kind, a, b])``: songs from
``(seed, SONG, stimulus)``, a subject's response from ``(seed, SUBJECT, subject)``, a recording's noise from
``(seed, NOISE, subject, stimulus)``. So the noise of a recording does not change with ``snr_db`` or with
``music``, and a data set written with ``music=False`` is the exact noise of the one written with music.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

SFREQ = 125.0          #: EEG rate of the cleaned release (Hz)
AUDIO_SR = 16000       #: rate of the written song audio (Hz); 16000 / 125 = 128 audio samples per EEG sample
HOP = int(AUDIO_SR // SFREQ)
FIRST_STIMULUS = 21    #: NMED-T's songs are song21 … song30
MAX_SONGS = 10

# stream kinds for :func:`rng`
SONG, SUBJECT, NOISE = 1, 2, 3


def rng(seed: int, kind: int, *ids: int) -> np.random.Generator:
    """The random stream of one (kind, ids) under ``seed``."""
    return np.random.default_rng([int(seed), int(kind), *[int(i) for i in ids]])


@dataclass(frozen=True)
class DipoleConfig:
    """What :func:`~datamodules.synthetic_dipole.write_dipole_set` writes (defaults: 6 subjects × 10 songs × 180 s)."""

    seed: int = 0
    snr_db: float = -9.0          #: music-driven / noise power on responding channels (see snr.py)
    n_subjects: int = 6
    n_songs: int = 10
    duration_s: float = 180.0     #: EEG length of every recording (the real songs last 4:30-5:00)
    music: bool = True            #: False: the same files without any music-driven signal (a control set)
    n_sources: int = 3            #: phase-locked music-driven dipoles per subject (+ 1 induced alpha source)
    responding_fraction: float = 0.25  #: a channel responds if its music power >= this × the maximum
    noise_rms_uv: float = 20.0    #: target RMS of the background (1/f) field, µV
    blink_uv: tuple[float, float] = (40.0, 120.0)  #: blink amplitude range at the nearest electrode, µV
    line_uv: tuple[float, float] = (0.1, 1.0)      #: residual 60 Hz amplitude range per channel, µV
    highpass_hz: float | None = 0.3  #: the release's high-pass on everything but the line residual; None = off
    first_subject: int = 2        #: subject ids first_subject, first_subject + 1, … (the release has no S01)

    def __post_init__(self) -> None:
        def bad(field: str, what: str, fix: str) -> None:
            raise ValueError(f"synthetic_dipole: {field}: {what} — {fix}")

        if not (1 <= int(self.n_songs) <= MAX_SONGS):
            bad("n_songs", f"{self.n_songs} is outside 1..{MAX_SONGS}", "NMED-T has songs 21-30; pick 1 to 10")
        if int(self.n_subjects) < 1:
            bad("n_subjects", f"{self.n_subjects} < 1", "write at least one subject")
        if not (self.duration_s * SFREQ >= 2 * SFREQ):
            bad("duration_s", f"{self.duration_s} s is shorter than 2 s", "use at least 2 s of EEG")
        if not math.isfinite(float(self.snr_db)):
            bad("snr_db", f"{self.snr_db} is not finite", "give a finite dB value; music=False writes no music")
        if int(self.n_sources) < 1:
            bad("n_sources", f"{self.n_sources} < 1", "use at least one phase-locked source")
        if not (0.0 < self.responding_fraction < 1.0):
            bad("responding_fraction", f"{self.responding_fraction} is outside (0, 1)", "use e.g. 0.25")
        if self.highpass_hz is not None and not (0.0 < float(self.highpass_hz) < SFREQ / 2):
            bad("highpass_hz", f"{self.highpass_hz} is outside (0, {SFREQ / 2:g}) Hz", "use 0.3 (the release) or None")
        if self.noise_rms_uv <= 0:
            bad("noise_rms_uv", f"{self.noise_rms_uv} <= 0", "use a positive µV value, e.g. 20")

    @property
    def n_samples(self) -> int:
        return int(round(self.duration_s * SFREQ))

    @property
    def stimuli(self) -> list[int]:
        return [FIRST_STIMULUS + i for i in range(int(self.n_songs))]

    @property
    def subjects(self) -> list[int]:
        return [int(self.first_subject) + i for i in range(int(self.n_subjects))]

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

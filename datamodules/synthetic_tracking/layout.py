"""The layout of a tracking set (who heard what, for how long, at which rates and SNR) and its random streams.

Every random draw comes from its own stream keyed by ``(seed, what, subject, stimulus)``, so the nuisance of a
recording is the same whether or not the music response is switched on: the same seed with ``snr_db=None`` (no music)
writes exactly the background of the music set, which is how :func:`.snr.measure_snr` measures the realised SNR.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

#: NMED-T's stimulus numbers (song21 … song30); the generator's songs take their tempi from the release's table
NMEDT_STIMULI: tuple[int, ...] = tuple(range(21, 31))


@dataclass(frozen=True)
class TrackingLayout:
    """What to write: participants × songs × duration, the simulated acquisition rate and the SNR knob."""

    subjects: tuple[int, ...] = (2, 3, 4, 5)       # participant ids as in subsNN (the release has no S01)
    stimuli: tuple[int, ...] = NMEDT_STIMULI      # songNN numbers, each an NMED-T song
    duration_s: float = 90.0                      # seconds of EEG (and audio) per song
    raw_sfreq: float = 250.0                      # simulated acquisition rate (the release: 1 kHz, decimated by 8)
    sfreq: float = 125.0                          # the release's rate after decimation
    audio_sr: int = 16000                         # sample rate of the written song WAVs
    snr_db: float | None = -9.0                   # music response vs everything else per responding channel; None: off
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.subjects or not self.stimuli:
            raise ValueError("subjects/stimuli: empty — a tracking set needs at least one subject and one song")
        if len(set(self.subjects)) != len(self.subjects) or min(self.subjects) < 0 or max(self.subjects) > 999:
            raise ValueError(f"subjects: {self.subjects} — give distinct participant ids in 0-999")
        bad = [s for s in self.stimuli if s not in NMEDT_STIMULI]
        if bad or len(set(self.stimuli)) != len(self.stimuli):
            raise ValueError(f"stimuli: {self.stimuli} — give distinct NMED-T song numbers in 21-30")
        if self.duration_s < 8.0:
            raise ValueError(f"duration_s: {self.duration_s} s is too short for the release's 0.3-Hz high-pass "
                             "— give 8 s or more")
        ratio = self.raw_sfreq / self.sfreq
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 2:
            raise ValueError(f"raw_sfreq: {self.raw_sfreq} Hz — give an integer multiple (>= 2) of sfreq "
                             f"{self.sfreq} Hz")
        if self.audio_sr % int(self.raw_sfreq) != 0:
            raise ValueError(f"audio_sr: {self.audio_sr} Hz — give a multiple of raw_sfreq {self.raw_sfreq} Hz")

    @property
    def decimation(self) -> int:
        return int(round(self.raw_sfreq / self.sfreq))

    @property
    def n_raw(self) -> int:
        """Samples per recording at the acquisition rate (a multiple of the decimation)."""
        return int(round(self.duration_s * self.sfreq)) * self.decimation

    @property
    def n_samples(self) -> int:
        """Samples per recording at the release rate (125 Hz)."""
        return int(round(self.duration_s * self.sfreq))


def rng_for(seed: int, what: str, *keys: int) -> np.random.Generator:
    """An independent generator for one named draw (``what``) of one subject / stimulus, stable across runs."""
    words = [int(seed) & 0xFFFFFFFF, zlib.crc32(what.encode()), *[int(k) & 0xFFFFFFFF for k in keys]]
    return np.random.default_rng(np.random.SeedSequence(words))

"""The demo generator (:class:`DemoGenerator`): its settings, the layout (stimuli, hearings, who heard what), and
each recording's audio, features, noise and music response computed in memory (:class:`RecordingParts`)."""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from chanmusic.core.electrodes import NMED_CH_NAMES

from ..nmed import NMED_N_CHANNELS, NMEDH_CONDITION_NAMES, normalize_dataset
from ..nmed.songs import NMEDH_CONDITIONS
from ..registry import dataset_code
from ..songs import SONGS, song_of
from . import seeds
from .features import audio_features
from .music import synth_song
from .noise import band_shape, draw_session, pink, release_band, shaped_noise
from .response import BANDS, ResponseMap, causal_filter, kernel, zscore_rows


@dataclass
class RecordingParts:
    """The additive parts of one synthetic recording (float64, µV, [125, T])."""

    noise: np.ndarray     # everything that is there without music
    response: np.ndarray  # the music-driven part (zero when music_response=False)

    def eeg(self) -> np.ndarray:
        """The values written to the file (float32)."""
        return (self.noise + self.response).astype(np.float32)


class DemoGenerator:
    """Computes the demo's audio, features and EEG in memory; :func:`write_demo` writes them.

    These settings are the demo's (``write_demo(root, seed, **settings)`` takes the same keywords):

    Args:
        seed: drives the EEG (response map, noise, subject order); the songs depend on the song only.
        dataset: ``"nmed-t"`` (songs 21..30, ``songNN_Imputed.mat``) or ``"nmed-h"`` (condition archives).
        n_subjects: subject ids are ``1..n_subjects``.
        duration_s: EEG length of every recording; the audio is ``audio_margin_s`` longer.
        sfreq: EEG rate (Hz). audio_sr: audio rate (Hz) of ``stimuli/songNN.wav``.
        music_response: ``False`` keeps the identical noise without the music (the no-music control).
        response_gain: scales the music response (2 = +6 dB).
        conditions: NMED-H conditions written (``orig`` and/or ``rev``); ignored for NMED-T.
        songs: global song indices (:data:`datamodules.songs.SONGS` rows) of ``dataset``; default all.
        phase_locked_fraction, induced_fraction: share of electrodes with each kind of response.
        audio_margin_s: how much longer than the EEG the audio is.
    """

    def __init__(
        self,
        seed: int = 0,
        dataset: str = "nmed-t",
        n_subjects: int = 4,
        duration_s: float = 120.0,
        sfreq: float = 125.0,
        audio_sr: int = 16000,
        music_response: bool = True,
        response_gain: float = 1.0,
        conditions: Sequence[str] = ("orig", "rev"),
        songs: Iterable[int] | None = None,
        phase_locked_fraction: float = 0.5,
        induced_fraction: float = 0.3,
        audio_margin_s: float = 2.0,
    ):
        self.seed = int(seed)
        self.dataset = normalize_dataset(dataset)
        if n_subjects < 1:
            raise ValueError("n_subjects must be >= 1")
        if duration_s <= 0 or sfreq <= 0 or audio_sr <= 0:
            raise ValueError("duration_s, sfreq and audio_sr must be positive")
        self.n_subjects = int(n_subjects)
        self.duration_s = float(duration_s)
        self.sfreq = float(sfreq)
        self.audio_sr = int(audio_sr)
        self.music_response = bool(music_response)
        self.response_gain = float(response_gain)
        self.audio_margin_s = float(audio_margin_s)
        self.n_samples = int(round(self.duration_s * self.sfreq))
        self.subjects = list(range(1, self.n_subjects + 1))
        all_songs = [s.index for s in SONGS if s.dataset == self.dataset]
        self.songs = all_songs if songs is None else sorted({int(s) for s in songs})
        bad = [s for s in self.songs if s not in all_songs]
        if bad or not self.songs:
            raise ValueError(f"songs {bad or '[]'} are not {self.dataset} songs ({all_songs})")
        if self.dataset == "nmed-h":
            conditions = [conditions] if isinstance(conditions, str) else list(conditions)
            unsupported = [c for c in conditions if c not in ("orig", "rev")]
            if unsupported or not conditions:
                raise ValueError(
                    f"the demo synthesises NMED-H conditions 'orig' and 'rev' only (got {conditions})"
                )
            self.conditions = [c for c in NMEDH_CONDITION_NAMES if c in conditions]
        else:
            self.conditions = ["orig"]
        self.phase_locked_fraction = float(phase_locked_fraction)
        self.induced_fraction = float(induced_fraction)
        self.map = ResponseMap.draw(self.seed, phase_locked_fraction, induced_fraction)
        self._audio: dict[int, np.ndarray] = {}
        self._feats: dict[int, np.ndarray] = {}

    @classmethod
    def from_manifest(cls, root: str | Path) -> "DemoGenerator":
        """The generator that wrote the demo under ``root`` (from its ``chanmusic_demo.json``)."""
        m = json.loads((Path(root) / "chanmusic_demo.json").read_text())
        settings = {name: m[name] for name in inspect.signature(cls).parameters if name != "n_subjects"}
        return cls(n_subjects=len(m["subjects"]), **settings)

    # ------------------------------------------------------------------ layout
    def stimulus_number(self, song: int, condition: str = "orig") -> int:
        """Release number (``songNN``) of global song ``song`` heard in ``condition``."""
        base = SONGS[song].number
        return base if self.dataset == "nmed-t" else NMEDH_CONDITIONS[condition] + base - 21

    @property
    def stimuli(self) -> list[int]:
        return sorted(self.stimulus_number(s, c) for s in self.songs for c in self.conditions)

    @property
    def hearings(self) -> list[str]:
        return ["a"] if self.dataset == "nmed-t" else ["a", "b"]

    def listeners(self, stimulus: int) -> list[int]:
        """Subject ids who heard ``stimulus``, in the order written to ``subsNN`` (shuffled per file)."""
        if self.dataset == "nmed-t":
            ids = list(self.subjects)
        else:
            song = song_of("nmed-h", stimulus).index
            k = SONGS[song].number - 21
            cond = [c for c, first in NMEDH_CONDITIONS.items() if first <= stimulus < first + 4][0]
            nc = len(self.conditions)
            ids = [s for i, s in enumerate(self.subjects) if self.conditions[(i + k) % nc] == cond]
        rng = np.random.default_rng([seeds.ORDER, self.seed, dataset_code(self.dataset), stimulus])
        return [ids[j] for j in rng.permutation(len(ids))]

    # ------------------------------------------------------------------ audio
    def audio(self, stimulus: int) -> np.ndarray:
        """The audio of ``stimulus`` as written to ``stimuli/songNN.wav`` (float32, ``audio_sr``)."""
        if stimulus not in self._audio:
            song = song_of(self.dataset, stimulus).index
            base = synth_song(song, self.duration_s + self.audio_margin_s, self.audio_sr)
            cond = "orig" if self.dataset == "nmed-t" else next(
                c for c, first in NMEDH_CONDITIONS.items() if first <= stimulus < first + 4)
            self._audio[stimulus] = np.ascontiguousarray(base[::-1]) if cond == "rev" else base
        return self._audio[stimulus]

    def features(self, stimulus: int) -> np.ndarray:
        """Music features of ``stimulus`` at the EEG rate, ``[F, T]`` (see :func:`audio_features`)."""
        if stimulus not in self._feats:
            self._feats[stimulus] = audio_features(self.audio(stimulus), self.audio_sr, self.sfreq,
                                                   self.n_samples)
        return self._feats[stimulus]

    def parts(self, subject: int, stimulus: int, hearing: str = "a", music_response: bool | None = None
              ) -> RecordingParts:
        """Noise and music response of one recording (µV, float64, ``[125, T]``; see :mod:`datamodules.synthetic`)."""
        music = self.music_response if music_response is None else bool(music_response)
        n, fs, C = self.n_samples, self.sfreq, NMED_N_CHANNELS
        sess = draw_session(self.seed, self.dataset, subject)
        smap = self.map.for_subject(self.seed, subject)
        ss = np.random.SeedSequence([seeds.REC, self.seed, dataset_code(self.dataset), int(subject),
                                     int(stimulus), "ab".index(hearing)])
        r = [np.random.default_rng(s) for s in ss.spawn(12)]

        # --- brain-like background
        n_lat = sess.mixing.shape[1]
        latent = shaped_noise(r[0], n_lat, n, fs, pink) * r[0].lognormal(0.0, 0.15, (n_lat, 1))
        brain = sess.mixing @ latent
        brain += sess.indep_uv[:, None] * shaped_noise(r[1], C, n, fs, pink)
        alpha = shaped_noise(r[2], 1, n, fs, band_shape(sess.alpha_hz - 1.0, sess.alpha_hz + 1.0))[0]
        burst = shaped_noise(r[2], 1, n, fs, lambda f: np.exp(-0.5 * (f / 0.4) ** 2))[0]
        burst = np.maximum(burst - 0.3, 0.0) * 1.6
        brain += sess.alpha_topo[:, None] * (alpha * burst)[None, :]
        drift = shaped_noise(r[3], 9, n, fs,
                             lambda f: (f > 0.04) / np.maximum(f, 0.05) * np.exp(-0.5 * (f / 0.5) ** 2))
        drift_mix = np.concatenate([np.full((C, 1), r[3].uniform(2.0, 6.0)),  # common + 8 random sources
                                    r[3].uniform(0.5, 3.0, (C, 1)) * r[3].dirichlet(np.ones(8), C) ** 0.5],
                                   axis=1)
        brain += drift_mix @ drift
        # ongoing rhythms whose amplitude the music modulates (present with or without music)
        carriers = np.zeros((len(smap.ind_channels), n))
        for j, band in enumerate(smap.ind_band):
            carriers[j] = smap.ind_carrier_uv[j] * shaped_noise(r[4], 1, n, fs, band_shape(*BANDS[band]))[0]
        brain[smap.ind_channels] += carriers

        # --- artifacts
        art = np.zeros((C, n))
        n_blinks = r[5].poisson(sess.blink_rate_hz * self.duration_s)
        width = int(round(0.4 * fs))
        shape = np.hanning(width) ** 2
        for t0, amp in zip(r[5].integers(0, max(1, n - width), n_blinks), r[5].uniform(0.6, 1.3, n_blinks)):
            art[:, t0:t0 + width] += sess.blink_topo[:, None] * (amp * shape)[None, :]
        t = np.arange(n) / fs
        line = r[6].uniform(0.1, 0.5) * np.sin(2 * np.pi * 60.0 * t + r[6].uniform(0, 2 * np.pi))
        line *= 1.0 + 0.3 * shaped_noise(r[6], 1, n, fs, lambda f: np.exp(-0.5 * (f / 0.1) ** 2))[0]
        art += sess.line_topo[:, None] * line[None, :]

        # --- this recording's electrode gains and bad channels
        gain = r[7].lognormal(0.0, 0.1, C) * r[7].lognormal(0.0, 0.08)
        sensor = sess.sensor_uv[:, None] * r[8].standard_normal((C, n), dtype=np.float32)
        noisy = [sess.noisy_channel] + list(r[9].choice(C, size=min(3, r[9].poisson(0.8)), replace=False))
        for ch in noisy:
            sensor[ch] += r[9].uniform(15.0, 40.0) * shaped_noise(r[9], 1, n, fs, release_band)[0]
        flat = int(r[10].integers(C)) if r[10].random() < 0.2 else None
        if flat is not None:
            gain[flat] = 0.0
            sensor[flat] = 0.05 * r[10].standard_normal(n)

        noise = gain[:, None] * (brain + art) + sensor

        # --- music response
        response = np.zeros((C, n))
        if music and self.response_gain != 0.0:
            feats = self.features(stimulus)
            pl = causal_filter(smap.pl_weights @ feats,
                               [kernel(fs, lag, tau, reb) for lag, tau, reb in
                                zip(smap.pl_lag_s, smap.pl_tau_s, smap.pl_rebound)])
            pl = zscore_rows(pl) * (self.response_gain * smap.pl_amp_uv)[:, None]
            response[smap.pl_channels] += pl
            a = self._modulation(smap, feats)
            response[smap.ind_channels] += carriers * (a - 1.0)  # channels are unique
            response *= gain[:, None]
        return RecordingParts(noise=noise, response=response)

    def _modulation(self, smap: ResponseMap, feats: np.ndarray) -> np.ndarray:
        m = zscore_rows(causal_filter(smap.ind_weights @ feats,
                                      [kernel(self.sfreq, lag, tau, 0.0) for lag, tau in
                                       zip(smap.ind_lag_s, smap.ind_tau_s)]))
        a = np.exp((self.response_gain * smap.ind_depth)[:, None] * m)
        return a / np.sqrt((a ** 2).mean(axis=1, keepdims=True))

    def induced_modulation(self, subject: int, stimulus: int) -> np.ndarray:
        """Amplitude factor ``a(t)`` ``[I, T]`` of the rhythms on ``map.ind_channels`` when music plays."""
        return self._modulation(self.map.for_subject(self.seed, subject), self.features(stimulus))

    def eeg(self, subject: int, stimulus: int, hearing: str = "a", music_response: bool | None = None
            ) -> np.ndarray:
        """float32 ``[125, T]`` µV exactly as written to (and read back from) the file."""
        return self.parts(subject, stimulus, hearing, music_response).eeg()

    # ------------------------------------------------------------------ manifest
    def manifest(self) -> dict:
        """The settings and layout written to ``chanmusic_demo.json``."""
        return {
            "generator": "datamodules.synthetic.write_demo",
            "note": "synthetic demo data in the NMED release layout; not real EEG",
            "seed": self.seed, "dataset": self.dataset, "subjects": self.subjects,
            "songs": self.songs, "stimuli": self.stimuli, "conditions": self.conditions,
            "duration_s": self.duration_s, "sfreq": self.sfreq, "audio_sr": self.audio_sr,
            "audio_margin_s": self.audio_margin_s, "music_response": self.music_response,
            "response_gain": self.response_gain,
            "phase_locked_fraction": self.phase_locked_fraction,
            "induced_fraction": self.induced_fraction,
            "phase_locked_channels": [NMED_CH_NAMES[c] for c in self.map.pl_channels],
            "induced_channels": [NMED_CH_NAMES[c] for c in self.map.ind_channels],
        }

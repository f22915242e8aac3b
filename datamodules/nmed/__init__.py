"""Readers for the NMED-T and NMED-H releases (cleaned, "Imputed" EEG) and for the song audio.

What is read (layout facts from the dataset authors' loading code and the NMED-T paper, Losorelli et al.,
ISMIR 2017):

* **NMED-T** — a folder holding ``song21_Imputed.mat`` … ``song30_Imputed.mat``. Each file holds
  ``dataNN`` (125 electrodes × T samples × participants), ``subsNN`` (participant ids, one per slice of
  axis 3) and ``fs`` (125 Hz). MATLAB v5 files are read with :func:`scipy.io.loadmat`; v7.3 (HDF5)
  files are read with h5py, whose arrays appear transposed and are put back in MATLAB axis order here.
* **NMED-H** — a folder holding ``CleanEEG_aggregatedByStimulus_{orig,rev,phase,meas}.zip`` (or the
  same names extracted as folders). Members ``CleanEEG_aggregatedByStimulus_<cond>/songNN_<h>_Imputed.mat``
  hold ``dataNN_<h>`` (125 × T × 12), ``subsNN_<h>`` and ``fs``; ``<h>`` is the hearing, ``a`` (first)
  or ``b`` (second). Members are read into memory (``BytesIO``); nothing is extracted to disk.

:func:`read_recordings` yields one :class:`Recording` per participant × stimulus (× hearing for
NMED-H), in file order (stimulus number, then hearing, then the order of ``subsNN``; never assume the
order of ``subsNN`` is the same in every file — map by ``Recording.subject``). EEG values are returned
untouched (µV, cast to float32); preprocessing belongs to ``prepare``.

**NMED-H conditions.** ``conditions=None`` (the default) reads every condition archive present under
the root. Our reading of the paper's numbers (68 participants, 14 songs, 29.4 h) is that all NMED-H
listeners and stimuli were used with the conditions merged under their base song, so every condition
maps to its base song (:func:`datamodules.songs.song_of`), while ``Recording.stimulus`` and
``Recording.condition`` keep what was actually heard — the audio of stimulus ``NN`` (``songNN.wav``,
e.g. the reversed track for ``rev``) is what a CLAP target must be computed from. Pass
``conditions=("orig",)`` for intact music only. The stimulus numbering (orig 21-24, rev 25-28,
phase 29-32, meas 33-36) is third-party; a member whose number does not belong to its archive's
condition is reported as an error rather than guessed around.

**Audio alignment.** :func:`read_audio` returns the audio from its sample 0, which chanmusic aligns to
EEG sample 0 (what third-party code does; the zero-lag alignment is *unverified* for the real
releases). NMED-T's audio is not in the release: users put their own copies in the audio folder as
``songNN.wav`` (or ``.flac``/``.ogg``/``.mp3``). :func:`check_audio_covers` refuses audio shorter than
the EEG it must explain.

**Errors.** Every malformed input raises :class:`NMEDFormatError` (a ``ValueError``) naming the file
and the fix; nothing is silently dropped, padded or truncated.

**Modules.** :mod:`.recording` (:class:`NMEDFormatError`, constants, the montage), :mod:`.songs` (the songs and
NMED-H's stimulus numbering), :mod:`.sources` (finding the files), :mod:`.matfile` (MATLAB v5/v7.3 files),
:mod:`.variables` (checking ``dataNN``/``subsNN``/``fs``), :mod:`.reader` (:func:`read_recordings`),
:mod:`.datasets` (the two releases as datasets of the protocol, :mod:`datamodules.protocol`). The song audio is read
by :mod:`datamodules.stimulus_audio` (re-exported here).
"""
from __future__ import annotations

from ..stimulus_audio import AUDIO_EXTENSIONS, audio_duration, audio_path, check_audio_covers, read_audio
from .reader import read_recordings
from .recording import (NMED_CH_NAMES, NMED_N_CHANNELS, NMEDH_CONDITION_NAMES, NMEDFormatError, Recording,
                        nmed_montage, normalize_dataset)

__all__ = [
    "NMED_CH_NAMES",
    "NMED_N_CHANNELS",
    "NMEDH_CONDITION_NAMES",
    "AUDIO_EXTENSIONS",
    "NMEDFormatError",
    "Recording",
    "nmed_montage",
    "normalize_dataset",
    "read_recordings",
    "audio_path",
    "audio_duration",
    "read_audio",
    "check_audio_covers",
]

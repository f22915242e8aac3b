"""``NMEDDataModule``: the prepared cache as batches, plus the data's facts for encoders and metrics.

The data module knows files and settings, not models: the cache key is computed here from the input files and every
setting; a missing cache is built by :func:`datamodules.prepare.prepare` with the CLAP the ``clap`` setting names
(or an embedder given to :meth:`NMEDDataModule.prepare_data`), so it works the same from the CLI and a notebook.
Which datasets exist, and their channels, rate and songs, come from the dataset table (:mod:`datamodules.registry`).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from datamodules.cache import CACHE_VERSION, PreparedCache, file_fingerprint, settings_key
from datamodules.control import DEFAULT_MIN_SHIFT_S, control_music, min_shift_windows
from datamodules.prepare import AudioEmbedder, prepare
from datamodules.registry import bind_roots, dataset_code, get_dataset
from datamodules.sampling import ResumableLoader, ResumableSampler
from datamodules.selection import (SelectionError, check_hearings, input_files, parse_datasets, parse_subject_refs,
                                   resolve_sources, resolve_subjects, songs_by_dataset)
from datamodules.songs import GENRES, SONGS
from datamodules.splits import Split, SplitConfig, split_windows
from datamodules.validate import SettingError, check_cache_facts, native_sfreq, validate_settings
from datamodules.windows import WindowDataset, collate_batch
from chanmusic.core.constants import CONTROLS, NATIVE_SFREQ

# the choices of three settings, as types: `--help` lists them and the parser refuses others (tests check that they
# match the validation tuples SCALINGS, SPLIT_MODES, CONTROLS)
Scaling = Literal["zscore", "robust", "none"]
SplitMode = Literal["random", "block", "hearing", "subjects", "songs"]
Control = Literal["none", "shift", "shuffle"]

log = logging.getLogger("chanmusic")


def default_cache_dir() -> Path:
    return Path(os.environ.get("CHANMUSIC_CACHE", Path.home() / ".cache" / "chanmusic"))


def clap_identity(spec: str, seed: int) -> str:
    """Cache-key identity of a CLAP spec without loading it (path: size + mtime; else the string)."""
    p = Path(spec)
    if p.exists():
        files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
        return f"{p.resolve()}:" + ";".join(f"{q.name}:{q.stat().st_size}:{int(q.stat().st_mtime)}" for q in files)
    return f"{spec}:seed={seed}" if spec.startswith("tiny-random") else spec


class NMEDDataModule(L.LightningDataModule):
    """Windows of music-EEG recordings (NMED-T, NMED-H or any registered dataset) from the prepared cache.

    Songs are global ids; subjects are namespaced by dataset (NMED-H ids + 1000 in batches). The split is fixed in
    recording time (``datamodules.splits``): ``span_s``-second spans labelled train/val/test, seeded per recording,
    so every window length holds out the same EEG. ``control: shift`` is the no-music control (``datamodules.control``):
    each recording's music targets circularly shifted by its own seeded amount, at least ``control_min_shift_s`` (and
    2 windows) from zero, never within a beat of a whole number of the song's bars, and spread apart from the other
    recordings' shifts of the same stimulus, so EEG and recording
    fingerprints are kept and only the music pairing is broken; ``shuffle`` gives every window a random window's audio
    (a sanity check that must score at chance). ``clap_center``: CLAP spaces are anisotropic (a tiny random CLAP gives
    cosine ≈ 0.98 between any two windows; 0.22 within / 0.0 across songs after centring) and InfoNCE and cosine
    identification only see what differs, so batches' ``clap`` is the centred target; the raw embeddings stay in
    ``cache.clap`` for the ridge adapter / AudioLDM.

    Args:
        root: the dataset's folder; for several, a mapping {dataset: DIR}, a list in dataset order, or one folder.
        dataset: a dataset name (nmed-t, nmed-h) or a list of them, pooled (the paper's pool: 68 subjects, 14 songs).
        audio_root: folder with the stimulus audio (songNN.wav|flac|mp3); default <root>/stimuli; a mapping for a pool.
        cache_dir: where prepared caches live; default $CHANMUSIC_CACHE or ~/.cache/chanmusic.
        subjects: keep only these subjects: ids, or "nmed-h:3" where an id is in two datasets (null = all).
        songs: keep only these global song ids (null = all).
        conditions: NMED-H conditions to read: orig, rev, phase, meas (null = every condition archive present).
        hearings: hearings to read: [a] (first, the authors' choice), [b] or [a, b] (null = [a]; hearing split: both).
        bandpass: [low, high] band-pass in Hz, or null (the NMED releases are already 0.3–50 Hz).
        average_reference: re-reference each recording to the channel average.
        resample: target EEG rate in Hz, or null to keep the data's rate.
        scaling: zscore per channel per recording (the authors' choice), robust (median/IQR) or none (µV).
        clip: clip scaled values to ±clip (counted and reported); null = off.
        window_s: window length in seconds.
        stride_s: hop between windows in seconds (null = window_s: no overlap).
        split: random (spans in time), block (each recording's end), hearing, subjects or songs (new music).
        test_fraction: share of each recording's time (subjects split: of subjects) held out for test.
        val_fraction: share of the remaining time held out for validation.
        split_seed: seed of the split (and of the shuffle control).
        span_s: length in seconds of the spans of recording time that the split labels.
        gap_s: seconds between train and held-out spans (null = window_s).
        test_subjects: the subjects split's test subjects, as subjects (null = a seeded test_fraction of them).
        test_songs: the songs split's held-out song ids (at least two).
        control: none, shift (the no-music control: per-recording shifted music) or shuffle (random pairing).
        control_min_shift_s: the shift control's smallest shift in seconds (never a whole number of bars).
        clap: CLAP for prepare: local laion-clap .pt, transformers folder / hub id, or tiny-random (offline).
        clap_seed: seed of a tiny-random CLAP.
        clap_dim: width of the CLAP embedding (512 for every released CLAP); checked against the cache.
        clap_center: align to CLAP embeddings minus their train-split mean, re-normalised (see above).
        batch_size: windows per batch.
        num_workers: DataLoader worker processes.
        expected_sfreq: the rate every EEG file must hold (null = the dataset's: 125 Hz for NMED); the encoder's rate.
        allow_split_change: let test score a checkpoint on another split than it was trained with (recorded).
        task: the BIDS task to read (``dataset: bids`` only; null = every task in the tree).
    """

    def __init__(
        self,
        root: str | list[str] | dict[str, str],
        dataset: str | list[str] = "nmed-t",
        audio_root: str | dict[str, str] | None = None,
        cache_dir: str | None = None,
        subjects: Sequence[int | str] | None = None,
        songs: Sequence[int] | None = None,
        conditions: Sequence[str] | None = None,
        hearings: Sequence[str] | None = None,
        bandpass: Sequence[float] | None = None,
        average_reference: bool = False,
        resample: float | None = None,
        scaling: Scaling = "zscore",
        clip: float | None = 10.0,
        window_s: float = 2.0,
        stride_s: float | None = None,
        split: SplitMode = "random",
        test_fraction: float = 0.05,
        val_fraction: float = 0.05,
        split_seed: int = 42,
        span_s: float = 8.0,
        gap_s: float | None = None,
        test_subjects: Sequence[int | str] | None = None,
        test_songs: Sequence[int] | None = None,
        control: Control = "none",
        control_min_shift_s: float = DEFAULT_MIN_SHIFT_S,
        clap: str = "tiny-random",
        clap_seed: int = 0,
        clap_dim: int = 512,
        clap_center: bool = True,
        batch_size: int = 64,
        num_workers: int = 0,
        expected_sfreq: float | None = None,
        allow_split_change: bool = False,
        task: str | None = None,
    ):
        super().__init__()
        bind_roots(dataset, root, audio_root, task)   # a BIDS tree: its songs, channels and rate, read first
        validate_settings({k: v for k, v in locals().items() if k not in ("self", "__class__")})
        self.datasets = parse_datasets(dataset)
        if scaling not in ("zscore", "robust", "none"):
            raise ValueError(f"data.scaling: {scaling!r} is not one of zscore, robust, none")
        if control not in CONTROLS:
            raise ValueError(f"data.control: {control!r} is not one of {CONTROLS}")
        if window_s <= 0 or (stride_s is not None and stride_s <= 0):
            raise ValueError("data.window_s / data.stride_s: must be positive seconds")
        self.dataset = self.datasets[0] if len(self.datasets) == 1 else list(self.datasets)
        self.sources = resolve_sources(self.datasets, root, audio_root)
        self.task = task
        self.root = self.sources[0].root
        self.roots = [str(src.root) for src in self.sources]
        self.audio_root = self.sources[0].audio_root
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.subject_refs = parse_subject_refs(subjects, self.datasets, "subjects")
        self.subjects = [str(s) for s in subjects] if subjects is not None else None
        self.songs = list(songs) if songs is not None else None
        songs_by_dataset(self.songs, self.datasets)  # every selected dataset keeps a song
        self.conditions = list(conditions) if conditions is not None else None
        self.hearings = check_hearings(hearings, self.datasets, split)
        self.bandpass = list(bandpass) if bandpass is not None else None
        self.average_reference = average_reference
        self.resample = resample
        self.scaling = scaling
        self.clip = clip
        self.window_s = window_s
        self.stride_s = stride_s if stride_s is not None else window_s
        self.test_subject_refs = parse_subject_refs(test_subjects, self.datasets, "test_subjects")
        self.split_cfg = SplitConfig(split, test_fraction, val_fraction, split_seed, gap_s,
                                     list(test_subjects) if test_subjects is not None else None, span_s,
                                     [int(x) for x in test_songs] if test_songs is not None else None)
        self.control = control
        self.control_min_shift_s = control_min_shift_s
        self.control_stats: dict[str, int] = {}
        self.clap = clap
        self.clap_seed = clap_seed
        self.clap_dim = clap_dim
        self.clap_center = clap_center
        self.clap_mean: np.ndarray | None = None
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.expected_sfreq = float(expected_sfreq if expected_sfreq is not None else native_sfreq(self.datasets))
        self.allow_split_change = allow_split_change
        # facts linked into encoders and stages by the CLI (known before any data is read)
        self.ch_names: list[str] = pooled_channels(self.datasets)
        self.n_channels = len(self.ch_names)
        self.sfreq = float(resample or self.expected_sfreq)
        self.n_times = int(round(window_s * self.sfreq))
        self.song_names = [f"{s.title} – {s.artist}" for s in SONGS]
        self.genres = list(GENRES)
        self.cache: PreparedCache | None = None
        self.split: Split | None = None

    # ---- facts -------------------------------------------------------------------------------
    @property
    def montage(self):
        """MNE DigMontage of the channels (NMED: GSN-HydroCel-129 positions), from the dataset."""
        return get_dataset(self.datasets[0]).montage()

    def input_files(self) -> list[Path]:
        return [p for src in self.sources for p in input_files(src)]

    def prepare_settings(self) -> dict[str, Any]:
        """Everything that determines the cache's content; its hash names the cache folder."""
        return {
            "version": CACHE_VERSION,
            "datasets": self.datasets,
            "sources": [{"dataset": src.dataset, "root": str(src.root.resolve()),
                         "audio_root": str(src.audio_root.resolve()), "files": file_fingerprint(input_files(src))}
                        for src in self.sources],
            "subjects": self.subjects, "songs": self.songs, "conditions": self.conditions,
            "hearings": self.hearings,
            "bandpass": self.bandpass, "average_reference": self.average_reference,
            "resample": self.resample, "scaling": self.scaling, "clip": self.clip,
            "window_s": self.window_s, "stride_s": self.stride_s,
            "clap": clap_identity(self.clap, self.clap_seed), "clap_spec": self.clap, "clap_seed": self.clap_seed,
            # the key names a rate other than 125 Hz only (caches from before the setting keep their key)
            **({} if self.expected_sfreq == NATIVE_SFREQ else {"expected_sfreq": self.expected_sfreq}),
            **({"task": self.task} if self.task else {}),
        }

    def cache_path(self, settings: dict[str, Any] | None = None) -> Path:
        settings = settings or self.prepare_settings()
        return self.cache_dir / f"{'+'.join(self.datasets)}-{settings_key(settings)}"

    # ---- Lightning hooks -------------------------------------------------------------------------
    def prepare_data(self, embedder: AudioEmbedder | None = None) -> None:
        """Build the cache for these settings unless it exists. ``embedder``: the audio embedder to use (it must be
        the CLAP that the ``clap`` setting names: the cache key records the setting); ``None`` loads that CLAP."""
        settings = self.prepare_settings()
        path = self.cache_path(settings)
        if (path / "manifest.json").exists():
            return
        prepare(settings, path, embedder)

    def setup(self, stage: str | None = None) -> None:
        if self.cache is not None:
            return
        self.cache = PreparedCache.open(self.cache_path())
        check_cache_facts(self, self.cache)
        dim = self.cache.clap.shape[1]
        if dim != self.clap_dim:
            raise ValueError(f"data.clap_dim={self.clap_dim} but the cached CLAP embeddings are {dim}-d: "
                             f"set --data.clap_dim {dim}")
        seg, recs = self.cache.segments, self.cache.recordings
        hearing = np.array([r.get("hearing", "a") for r in recs])[seg[:, 0]]
        # a subject's hearings of one stimulus share their spans; draws are seeded by what was heard, by whom
        keys = [(dataset_code(r["dataset"]), int(r["subject"]), int(r["stimulus"])) for r in recs]
        group_of_key = {k: i for i, k in enumerate(dict.fromkeys(keys))}
        if self.test_subject_refs is not None:
            present: dict[str, set[int]] = {d: set() for d in self.datasets}
            for r in recs:
                present.setdefault(r["dataset"], set()).add(int(r["subject"]))
            self.split_cfg.test_subjects = sorted(resolve_subjects(self.test_subject_refs, present, "test_subjects"))
        self.split = split_windows(
            seg[:, 0], seg[:, 1], seg[:, 3], seg[:, 4], self.split_cfg, self.sfreq, hearing,
            n_samples={i: int(r["n_samples"]) for i, r in enumerate(recs)},
            group={i: group_of_key[k] for i, k in enumerate(keys)},
            seed_key={g: k for k, g in group_of_key.items()}, gap_default_s=self.window_s,
            song={i: int(r["song"]) for i, r in enumerate(recs)})
        log.info(self.split.summary())
        if self.control == "shift":
            self.music_of_row = self.control_targets()
        elif self.control == "shuffle" and self.split_cfg.mode == "songs":
            # within each part: no held-out song's audio reaches training (new music)
            rng = np.random.default_rng(self.split_cfg.seed)
            self.music_of_row = seg[:, 5].copy()
            for rows in (self.split.train, self.split.val, self.split.test):
                self.music_of_row[rows] = rng.permutation(seg[rows, 5])
        elif self.control == "shuffle":
            self.music_of_row = np.random.default_rng(self.split_cfg.seed).permutation(seg[:, 5])
        else:
            self.music_of_row = seg[:, 5].copy()
        clap = np.asarray(self.cache.clap, dtype=np.float32)
        if self.clap_center:
            self.clap_mean = clap[np.unique(self.music_of_row[self.split.train])].mean(0)
            clap = clap - self.clap_mean
            clap /= np.maximum(np.linalg.norm(clap, axis=1, keepdims=True), 1e-8)
        self.targets = clap

    def control_targets(self) -> np.ndarray:
        """Music id per window for the no-music control (``datamodules.control``): each recording's targets
        circularly shifted by its own seeded amount. The EEG is untouched, so recording identity is kept."""
        assert self.cache is not None
        seg, recs = self.cache.segments, self.cache.recordings
        stim = {i: (dataset_code(r["dataset"]), int(r["stimulus"])) for i, r in enumerate(recs)}
        bpm = {i: SONGS[int(r["song"])].bpm for i, r in enumerate(recs)}  # the bar rule (datamodules.control)
        out, self.control_stats = control_music(seg[:, 0], seg[:, 3], seg[:, 5], stim, self.split_cfg.seed,
                                                min_shift_windows(self.control_min_shift_s, self.stride_s),
                                                self.stride_s, bpm)
        log.info("control: per-recording shifts, >= %(min_from_zero)d windows from zero and >= %(min_between)d "
                 "between recordings of one stimulus", self.control_stats)
        return out

    def dataset_for(self, part: str) -> WindowDataset:
        if self.cache is None or self.split is None:
            self.setup()
        rows = getattr(self.split, part)
        return WindowDataset(self.cache, rows, self.music_of_row, self.targets)

    def _loader(self, part: str, shuffle: bool) -> DataLoader:
        ds = self.dataset_for(part)
        if len(ds) == 0:
            raise SelectionError(f"--data.{'val' if part == 'val' else 'test'}_fraction: the {part} split is empty "
                             f"({self.split.summary()}) — raise it, use more data, or make data.span_s a few "
                             f"windows long (a held-out window must fit inside held-out spans)")
        drop_last = shuffle and len(ds) > self.batch_size
        pin = self._on_cuda()  # page-locked batches: asynchronous host-to-GPU copies
        if shuffle:  # seeded per epoch, resumable mid-epoch, same windows on 1 or N processes: datamodules.sampling
            world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
            sampler = ResumableSampler(ds, world, rank, shuffle=True, seed=int(os.environ.get("PL_GLOBAL_SEED", 0)))
            return ResumableLoader(ds, sampler, batch_size=self.batch_size, num_workers=self.num_workers,
                                   collate_fn=collate_batch, pin_memory=pin,
                                   drop_last=drop_last, persistent_workers=self.num_workers > 0)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                          collate_fn=collate_batch, pin_memory=pin,
                          drop_last=drop_last, persistent_workers=self.num_workers > 0)

    def _on_cuda(self) -> bool:
        """Whether the attached trainer runs on CUDA (then batches are pinned)."""
        root = getattr(getattr(self, "trainer", None), "strategy", None)
        device = getattr(getattr(root, "root_device", None), "type", None)
        return device == "cuda"

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # ---- metadata for metrics ------------------------------------------------------------------
    def music_table(self) -> np.ndarray:
        """int64 ``[M, 3]`` (stimulus_key, start, length) of every distinct music segment."""
        assert self.cache is not None
        return self.cache.music


def pooled_channels(datasets: Sequence[str]) -> list[str]:
    """The channel names of the selected datasets' recordings (a pool's datasets must share them, in one order)."""
    first = list(get_dataset(datasets[0]).ch_names)
    for d in datasets[1:]:
        if list(get_dataset(d).ch_names) != first:
            raise SettingError("dataset", f"{datasets[0]} and {d} record different channels",
                               "pool datasets recorded with one montage, or map one onto the other's channels")
    return first

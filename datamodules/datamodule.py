"""``NMEDDataModule``: the prepared cache as batches, plus the data's facts for encoders and metrics.

The data module knows files and settings, not models: the cache key is computed here from the input
files and every setting, and building a missing cache is delegated to ``preparer`` (set by the
``chanmusic`` CLI to :func:`chanmusic.data.prepare.prepare`), so ``datamodules`` never imports ``chanmusic``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from datamodules.cache import CACHE_VERSION, CacheError, PreparedCache, file_fingerprint, settings_key
from datamodules.control import control_music, min_shift_windows
from datamodules.nmed import nmed_montage
from datamodules.sampling import ResumableLoader, ResumableSampler
from datamodules.selection import (DATASET_CODE, SelectionError, check_hearings, input_files, parse_datasets,
                                   parse_subject_refs, resolve_sources, resolve_subjects, songs_by_dataset)
from datamodules.songs import GENRES, SONGS
from datamodules.splits import Split, SplitConfig, split_windows
from datamodules.validate import check_cache_facts, validate_settings
from datamodules.windows import WindowDataset, collate_batch
from chanmusic.core.constants import CONTROLS, NATIVE_SFREQ
from chanmusic.core.electrodes import NMED_CH_NAMES

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
    """NMED-T / NMED-H windows from the prepared cache.

    Args:
        root: the release folder of one dataset; for several, a mapping ``{nmed-t: DIR, nmed-h: DIR}``, a list in
            ``dataset`` order, or one folder holding ``nmed-t/`` and ``nmed-h/`` (``datamodules.selection``).
        dataset: ``"nmed-t"``, ``"nmed-h"`` or ``[nmed-t, nmed-h]`` (the paper's pool: 68 subjects, 14 songs).
            Songs are global ids; subjects are namespaced by dataset (NMED-H ids + 1000 in batches).
        audio_root: folder with ``songNN.wav|flac|mp3``; default ``<root>/stimuli`` per dataset; for a pool a
            mapping per dataset (both releases number their songs from 21).
        cache_dir: where prepared caches live; default ``$CHANMUSIC_CACHE`` or ``~/.cache/chanmusic``.
        subjects: keep only these subjects: release ids, or ``"nmed-h:3"`` where an id is in both datasets
            (``None`` = all). songs: global song ids (``None`` = all).
        conditions: NMED-H conditions to read (``None``: every condition archive present — all four in the
            release, so all 48 listeners, each having heard one version of each song). hearings: NMED-H hearings: ``[a]`` (first hearing, the
            authors' choice), ``[b]`` or ``[a, b]`` (then a subject's two hearings of a stimulus share their split
            spans, so a song-time is on one side for both); ``None`` = ``[a]``, or ``[a, b]`` for the hearing split.
        bandpass: ``[low, high]`` Hz or ``None`` (the releases are already 0.3–50 Hz).
        average_reference: re-reference each recording to the channel average.
        resample: target rate in Hz, or ``None`` to keep 125 Hz.
        scaling: ``"zscore"`` per channel per recording (the authors' choice), ``"robust"`` (median/IQR)
            or ``"none"`` (µV).
        clip: clip scaled values to ±clip (counted and reported); ``None`` = off.
        window_s, stride_s: window length and hop in seconds (stride default = window: no overlap).
        split, test_fraction, val_fraction, split_seed, span_s, gap_s, test_subjects: the split, fixed in
            recording time (``datamodules.splits``): ``span_s``-second spans labelled train/val/test, seeded per
            recording, so every window length sees the same test spans; ``gap_s`` (default: ``window_s``)
            separates train from held-out spans. ``test_subjects`` as ``subjects``.
        control: ``"none"``; ``"shift"``, the no-music control: each recording's music targets circularly
            shifted by its own seeded amount, at least ``control_min_shift_s`` (and 2 windows) from zero and
            from every other recording's shift of the same stimulus (``datamodules.control``): EEG and
            recording fingerprints are kept, the music pairing is broken for every recording separately; or
            ``"shuffle"``: every window gets a random (seeded by ``split_seed``) window's audio — a
            shuffled-label sanity check that must score at chance.
        clap: CLAP spec for ``prepare`` (local laion-clap .pt, transformers dir / hub id, or ``tiny-random``).
        clap_seed: seed of a ``tiny-random`` CLAP.
        clap_dim: dimension of the CLAP embedding (512 for every released CLAP); checked against the cache.
        clap_center: align to CLAP embeddings minus their train-split mean (re-normalised). CLAP spaces are
            anisotropic — every music clip shares a large common direction (a tiny random CLAP gives cosine
            ≈ 0.98 between any two windows; 0.22 within / 0.0 across songs after centring) — and InfoNCE and
            cosine identification only see what differs. Batches' ``clap`` is the centred target; the raw
            embeddings stay in ``cache.clap`` for the ridge adapter / AudioLDM.
        batch_size, num_workers: loader settings.
        expected_sfreq: the sampling rate every EEG file must hold (the releases': 125 Hz); the encoder is told
            this rate (or ``resample``).
        allow_split_change: let ``test`` score a checkpoint on a split other than the one it was trained with
            (recorded in ``metrics.json``); refused otherwise (``chanmusic.evaluation.provenance``).
    """

    preparer: ClassVar[Callable[[dict[str, Any], Path], Path] | None] = None

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
        scaling: str = "zscore",
        clip: float | None = 10.0,
        window_s: float = 2.0,
        stride_s: float | None = None,
        split: str = "random",
        test_fraction: float = 0.05,
        val_fraction: float = 0.05,
        split_seed: int = 42,
        span_s: float = 8.0,
        gap_s: float | None = None,
        test_subjects: Sequence[int | str] | None = None,
        control: str = "none",
        control_min_shift_s: float = 4.0,
        clap: str = "tiny-random",
        clap_seed: int = 0,
        clap_dim: int = 512,
        clap_center: bool = True,
        batch_size: int = 64,
        num_workers: int = 0,
        expected_sfreq: float = NATIVE_SFREQ,
        allow_split_change: bool = False,
    ):
        super().__init__()
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
                                     list(test_subjects) if test_subjects is not None else None, span_s)
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
        self.expected_sfreq = float(expected_sfreq)
        self.allow_split_change = allow_split_change
        # facts linked into encoders and stages by the CLI (known before any data is read)
        self.ch_names: list[str] = list(NMED_CH_NAMES)
        self.n_channels = len(self.ch_names)
        self.sfreq = float(resample or expected_sfreq)
        self.n_times = int(round(window_s * self.sfreq))
        self.song_names = [f"{s.title} – {s.artist}" for s in SONGS]
        self.genres = list(GENRES)
        self.cache: PreparedCache | None = None
        self.split: Split | None = None

    # ---- facts -------------------------------------------------------------------------------
    @property
    def montage(self):
        """MNE DigMontage of the channels (GSN-HydroCel-129 positions)."""
        return nmed_montage()

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
            **({} if self.expected_sfreq == NATIVE_SFREQ else {"expected_sfreq": self.expected_sfreq}),
        }

    def cache_path(self, settings: dict[str, Any] | None = None) -> Path:
        settings = settings or self.prepare_settings()
        return self.cache_dir / f"{'+'.join(self.datasets)}-{settings_key(settings)}"

    # ---- Lightning hooks -------------------------------------------------------------------------
    def prepare_data(self) -> None:
        settings = self.prepare_settings()
        path = self.cache_path(settings)
        if (path / "manifest.json").exists():
            return
        if NMEDDataModule.preparer is None:
            roots = " ".join(str(src.root) for src in self.sources)
            raise CacheError(f"no prepared cache for these settings at {path}: run "
                             f"`chanmusic prepare --data.root {roots} --data.dataset {self.dataset} ...` first")
        NMEDDataModule.preparer(settings, path)

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
        keys = [(DATASET_CODE[r["dataset"]], int(r["subject"]), int(r["stimulus"])) for r in recs]
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
            seed_key={g: k for k, g in group_of_key.items()}, gap_default_s=self.window_s)
        log.info(self.split.summary())
        if self.control == "shift":
            self.music_of_row = self.control_targets()
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
        stim = {i: (DATASET_CODE[r["dataset"]], int(r["stimulus"])) for i, r in enumerate(recs)}
        out, self.control_stats = control_music(seg[:, 0], seg[:, 3], seg[:, 5], stim, self.split_cfg.seed,
                                                min_shift_windows(self.control_min_shift_s, self.stride_s))
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
        if shuffle:  # seeded per epoch, resumable mid-epoch, same windows on 1 or N processes: datamodules.sampling
            world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
            sampler = ResumableSampler(ds, world, rank, shuffle=True, seed=int(os.environ.get("PL_GLOBAL_SEED", 0)))
            return ResumableLoader(ds, sampler, batch_size=self.batch_size, num_workers=self.num_workers,
                                   collate_fn=collate_batch,
                                   drop_last=drop_last, persistent_workers=self.num_workers > 0)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                          collate_fn=collate_batch,
                          drop_last=drop_last, persistent_workers=self.num_workers > 0)

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

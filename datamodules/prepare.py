"""``prepare``: a dataset's recordings + stimulus audio -> the cache that every stage trains from.

Reads recordings through each selected dataset's protocol (:mod:`datamodules.protocol`; NMED: the release readers),
preprocesses them (:mod:`datamodules.preprocess`), cuts windows, and embeds every *distinct* music segment once with
the audio embedder (CLAP) plus its log-mel, writing through :mod:`datamodules.cache`. Training never runs CLAP. The
cache folder is named by a hash of the input files and all settings, so a rerun with the same settings does nothing
and a changed setting builds a new cache.
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from chanmusic.core.constants import NATIVE_SFREQ
from chanmusic.core.errors import DataError
from datamodules.cache import CacheWriter, MUSIC_COLUMNS, SEGMENT_COLUMNS, cache_lock
from datamodules.input_checks import check_embeddings, check_recording, check_audio_not_longer, check_song_audio, count_silent_windows
from datamodules.preprocess import preprocess_recording
from datamodules.protocol import DataFormatError, MusicEEGDataset, Recording, RecordingRequest
from datamodules.registry import get_dataset
from datamodules.selection import parse_subject_refs, resolve_subjects, songs_by_dataset, subject_id
from datamodules.stimulus_audio import read_audio_file

log = logging.getLogger("chanmusic")


class AudioEmbedder(Protocol):
    """What ``prepare`` needs of the audio embedder (:class:`chanmusic.audio.ClapEmbedder` is one)."""

    description: str  # recorded in the manifest
    is_random: bool   # a randomly initialised model (recorded in the manifest)

    def embed(self, audio: torch.Tensor, sr: int) -> torch.Tensor:
        """``[B, S]`` waveforms at ``sr`` Hz -> ``[B, D]`` embeddings."""


def prepare(settings: dict[str, Any], path: Path, embedder: AudioEmbedder | None = None, batch_size: int = 32
            ) -> Path:
    """Build the cache described by ``settings`` (from ``NMEDDataModule.prepare_settings``) at ``path``, embedding
    the music with ``embedder`` (``None``: the CLAP ``settings["clap_spec"]`` names, loaded once the EEG is done); a
    second prepare of the same cache waits for the first (``cache_lock``) and then reuses its result."""
    with cache_lock(path):
        try:
            return _prepare(settings, Path(path), embedder, batch_size)
        except BaseException:  # a refused or killed prepare leaves no partial folder behind
            shutil.rmtree(Path(path).with_name(Path(path).name + ".partial"), ignore_errors=True)
            raise


def _load_clap(settings: dict[str, Any]) -> AudioEmbedder:
    """The CLAP ``--data.clap`` names; a hub id that cannot be fetched (offline, unknown id) names the field."""
    from chanmusic.audio import load_clap

    spec = settings["clap_spec"]
    try:
        return load_clap(spec, seed=settings["clap_seed"])
    except (OSError, ValueError) as e:
        if Path(str(spec)).expanduser().exists() or str(spec).startswith((".", "/", "~")) or isinstance(e, ValueError):
            raise
        first = next((x.strip() for x in str(e).splitlines() if x.strip()), type(e).__name__)[:200]
        raise DataError("--data.clap", f"cannot load the CLAP {spec!r} from the Hugging Face hub ({first})",
                        f"download it while online (huggingface-cli download {spec}) or pass a local folder or "
                        f".pt file; --data.clap tiny-random runs offline") from e


def _prepare(settings: dict[str, Any], path: Path, embedder: AudioEmbedder | None, batch_size: int) -> Path:
    from chanmusic.audio import MEL_SR, load_clap, log_mel  # heavy imports only when building

    t0 = time.time()
    if (path / "manifest.json").exists():
        print(f"[prepare] cache up to date, reusing {path}")
        return path
    print(f"[prepare] building cache {path}")
    audio_roots = {src["dataset"]: Path(src["audio_root"]) for src in settings["sources"]}
    writer = CacheWriter(path)
    recordings: list[dict[str, Any]] = []
    segments: list[tuple[int, ...]] = []
    music_index: dict[tuple[int, int, int], int] = {}
    stimuli: list[str] = []
    warnings: dict[str, int] = {"clipped_values": 0, "flat_channels": 0, "tail_samples_unused": 0}
    window_s, stride_s = settings["window_s"], settings["stride_s"]
    audio_len_s: dict[tuple[str, int], float] = {}
    sfreq_out = None
    ch_names = None

    for rec in tqdm(selected_recordings(settings), desc="prepare: recordings", unit="rec"):
        audio_root, dataset = audio_roots[rec.dataset], get_dataset(rec.dataset)
        if ch_names is None:
            ch_names = list(rec.ch_names)
        elif list(rec.ch_names) != ch_names:
            raise DataFormatError(f"{rec.source}: channel names differ from the first recording's")
        check_recording(rec.eeg, rec.source, rec.subject)
        akey = (rec.dataset, rec.stimulus)  # datasets number their stimuli independently (NMED: both from 21)
        if akey not in audio_len_s:
            audio_len_s[akey] = _audio_seconds(dataset.audio_path(audio_root, rec.stimulus))
            check_song_audio(dataset.audio_path(audio_root, rec.stimulus), warnings)
        eeg_s = rec.eeg.shape[1] / rec.sfreq
        if audio_len_s[akey] + 1e-6 < eeg_s:
            raise DataFormatError(
                f"{dataset.audio_path(audio_root, rec.stimulus)}: audio is {audio_len_s[akey]:.2f} s but the EEG "
                f"recording {rec.source} (subject {rec.subject}) is {eeg_s:.2f} s. Use the full-length song "
                f"file (audio sample 0 must be EEG sample 0)")
        check_audio_not_longer(dataset.audio_path(audio_root, rec.stimulus), audio_len_s[akey], eeg_s, rec.source)
        x, sfreq, counts = preprocess_recording(
            rec.eeg, rec.sfreq, settings["bandpass"], settings["average_reference"], settings["resample"],
            settings["scaling"], settings["clip"])
        warnings["clipped_values"] += counts["clipped"]
        warnings["flat_channels"] += counts["flat_channels"]
        sfreq_out = sfreq
        L, hop = int(round(window_s * sfreq)), int(round(stride_s * sfreq))
        T = x.shape[1]
        if T < L:
            raise DataFormatError(f"{rec.source}: subject {rec.subject} has {T / sfreq:.2f} s of EEG, shorter "
                                  f"than one window (data.window_s={window_s})")
        offset = writer.append_eeg(x.T)
        r = len(recordings)
        key = f"{rec.dataset}:{rec.stimulus}"
        if key not in stimuli:
            stimuli.append(key)
        sk = stimuli.index(key)
        starts = np.arange(0, T - L + 1, hop)
        warnings["tail_samples_unused"] += int(T - (starts[-1] + L))
        sid = subject_id(rec.dataset, rec.subject)  # namespaced by dataset (datamodules.selection)
        for s in starts:
            m = music_index.setdefault((sk, int(s), L), len(music_index))
            segments.append((r, sid, rec.song, int(s), L, m))
        recordings.append({"dataset": rec.dataset, "subject": rec.subject, "subject_id": sid, "song": rec.song,
                           "stimulus": rec.stimulus, "condition": rec.condition, "hearing": rec.hearing,
                           "offset": offset, "n_samples": T, "source": rec.source})
    songs = songs_by_dataset(settings.get("songs"), list(audio_roots))
    for src in settings["sources"]:
        request = _request(settings, src["dataset"], songs[src["dataset"]])
        missing = get_dataset(src["dataset"]).missing_files(Path(src["root"]), request)
        if missing:
            warnings["missing_release_files"] = warnings.get("missing_release_files", 0) + len(missing)
            log.warning("%s: %d release file(s) not found and left out: %s", src["root"], len(missing),
                        ", ".join(missing[:6]) + (" …" if len(missing) > 6 else ""))
    if not recordings:
        raise DataFormatError(f"data.subjects: no recordings matched the selection "
                              f"(subjects={settings.get('subjects')}, songs={settings.get('songs')}, "
                              f"conditions={settings.get('conditions')}) — widen it")

    music = np.array(list(music_index.keys()), dtype=np.int64).reshape(-1, len(MUSIC_COLUMNS))
    clap = embedder if embedder is not None else _load_clap(settings)
    print(f"[prepare] CLAP: {clap.description}")
    clap_out = None
    mel_out = None
    for sk, key in enumerate(tqdm(stimuli, desc="prepare: music segments", unit="song")):
        dataset, stim = key.split(":")[0], int(key.split(":")[1])
        audio, sr = read_audio_file(get_dataset(dataset).audio_path(audio_roots[dataset], stim), target_sr=MEL_SR)
        rows = np.flatnonzero(music[:, 0] == sk)
        for b in range(0, len(rows), batch_size):
            chunk = rows[b:b + batch_size]
            clips = np.stack([cut_clip(audio, sr, music[i, 1], music[i, 2], sfreq_out) for i in chunk])
            warnings["silent_windows"] = warnings.get("silent_windows", 0) + count_silent_windows(clips)
            wav = torch.from_numpy(clips)
            emb = clap.embed(wav, sr).float().numpy()
            mel = log_mel(wav, sr).float().numpy()
            if clap_out is None:
                clap_out = writer.open_array("clap", (len(music), emb.shape[1]))
                mel_out = writer.open_array("mel", (len(music),) + mel.shape[1:])
            clap_out[chunk] = emb
            mel_out[chunk] = mel
    clap_out.flush()
    mel_out.flush()
    check_embeddings(clap_out, music, stimuli, ", ".join(str(a) for a in audio_roots.values()))
    del clap_out, mel_out
    writer.save_array("segments", np.array(segments, dtype=np.int64).reshape(-1, len(SEGMENT_COLUMNS)))
    writer.save_array("music", music)
    writer.save_json("recordings.json", recordings)
    manifest = {
        "settings": settings, "n_recordings": len(recordings), "n_segments": len(segments),
        "n_music": len(music), "stimuli": stimuli, "sfreq": sfreq_out, "ch_names": ch_names,
        "window": int(round(window_s * sfreq_out)), "clap": clap.description, "clap_is_random": clap.is_random,
        "warnings": warnings, "seconds": round(time.time() - t0, 2),
    }
    writer.finish(manifest)
    print(f"[prepare] {len(recordings)} recordings, {len(segments)} windows, {len(music)} distinct music "
          f"segments in {time.time() - t0:.1f} s")
    for k, v in warnings.items():
        if v:
            print(f"[prepare] warning: {k} = {v}")
    return path


def selected_recordings(settings: dict[str, Any]) -> Iterator[Recording]:
    """The recordings of every selected dataset (``settings["sources"]``), one at a time, with the selection's
    songs, conditions, hearings and subjects (ids namespaced as in ``datamodules.selection``: a bare id found in two
    datasets is ambiguous and an error; any requested id found nowhere is an error)."""
    datasets = [src["dataset"] for src in settings["sources"]]
    songs = songs_by_dataset(settings.get("songs"), datasets)
    refs = parse_subject_refs(settings.get("subjects"), datasets, "subjects")
    found: dict[str, set[int]] = {d: set() for d in datasets}
    for src in settings["sources"]:
        d = src["dataset"]
        wanted = None if refs is None else sorted(refs[0][d] | refs[1])
        if wanted == []:
            continue
        dataset = get_dataset(d)
        request = _request(settings, d, songs[d], wanted)
        for rec in dataset.recordings(Path(src["root"]), request):
            if not _asked_for(dataset, rec, request):
                continue
            _check_rate(rec, request.expected_sfreq)
            found[d].add(rec.subject)
            yield rec
    if refs is not None:
        try:
            resolve_subjects(refs, found, "subjects")  # raises on a missing or colliding id
        except ValueError:  # name every subject present, not only those the selection read
            everyone = {src["dataset"]: {r.subject for r in get_dataset(src["dataset"]).recordings(
                Path(src["root"]), _request(settings, src["dataset"], songs[src["dataset"]]))}
                for src in settings["sources"]}
            resolve_subjects(refs, {d: found[d] | everyone[d] for d in datasets}, "subjects")
            raise


def _request(settings: dict[str, Any], dataset: str, songs: list[int] | None,
             subjects: list[int] | None = None) -> RecordingRequest:
    """What ``settings`` ask of one dataset (``songs``: its share of ``settings["songs"]``, ``None`` = all)."""
    return RecordingRequest(songs=songs, subjects=subjects, conditions=settings.get("conditions"),
                            hearings=settings.get("hearings"),
                            expected_sfreq=settings.get("expected_sfreq", NATIVE_SFREQ))


def _asked_for(dataset: MusicEEGDataset, rec: Recording, request: RecordingRequest) -> bool:
    """Whether ``request`` asks for ``rec`` (conditions and hearings count only where the dataset has several)."""
    return ((request.subjects is None or rec.subject in request.subjects)
            and (request.songs is None or rec.song in request.songs)
            and (len(dataset.conditions) < 2 or request.conditions is None or rec.condition in request.conditions)
            and (len(dataset.hearings) < 2 or request.hearings is None or rec.hearing in request.hearings))


def _check_rate(rec: Recording, expected: float | None) -> None:
    if expected is not None and not np.isclose(float(rec.sfreq), float(expected)):
        raise DataFormatError(f"{rec.source}: the EEG is at {float(rec.sfreq):g} Hz but {float(expected):g} Hz is "
                              f"expected — resample it, or pass --data.expected_sfreq {float(rec.sfreq):g} if every "
                              "recording is at that rate")


def _audio_seconds(path: Path) -> float:
    import soundfile as sf

    try:
        return float(sf.info(str(path)).duration)
    except RuntimeError:  # formats soundfile cannot probe (e.g. some mp3): decode
        audio, sr = read_audio_file(path)
        return len(audio) / sr


def cut_clip(audio: np.ndarray, sr: int, start: int, length: int, sfreq: float) -> np.ndarray:
    """Audio samples heard during EEG samples ``[start, start + length)`` (audio 0 = EEG 0): the cache's one
    cutting rule, also used for the reconstruction stage's true clips (:mod:`datamodules.true_audio`)."""
    a = int(round(start / sfreq * sr))
    n = int(round(length / sfreq * sr))
    clip = audio[a:a + n]
    if len(clip) != n:  # prepare checked the audio covers the EEG; this is a rounding sample at most
        clip = np.pad(clip, (0, n - len(clip)))
    return clip.astype(np.float32)

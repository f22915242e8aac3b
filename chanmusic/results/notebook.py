"""The notebook API: ``chanmusic.load_run(path)`` -> :class:`Run`, a trained run that embeds new EEG and evaluates.

``run.embed(x)`` takes an MNE ``Raw`` / ``Epochs`` or an array with its channel names and rate and applies what
``chanmusic prepare`` applied to the run's training data, in the same order (band-pass, reference, resample,
scaling, clipping: :func:`datamodules.preprocess.preprocess_recording` with the run's data settings), maps its
channels by name onto the run's montage, cuts the run's windows (from sample 0, the run's stride) and returns the
stage's embedding of each (the one ``chanmusic predict`` writes). ``run.evaluate()`` runs the stage's ``test`` on a
data module (default: the run's own) into a new folder, never over the run's ``metrics.json``.

The run is rebuilt by the one run loader (:func:`chanmusic.results.runs.load_run`: its ``config.yaml`` names the
encoder, so an aligned checkpoint reloads without passing one).
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from chanmusic.core.errors import InputError
from chanmusic.core.resample import polyphase_factors
from chanmusic.results.runs import LoadedRun, load_run as _load

__all__ = ["Run", "Embeddings", "load_run"]
log = logging.getLogger("chanmusic")
VOLTS_TO_UV = 1e6   # MNE holds EEG in volts; recordings (and the run's training data) are in µV


@dataclass
class Embeddings:
    """``embedding [N, D]`` (the stage's, not normalised), and per window its ``start_s`` in its recording and
    its ``epoch`` (0 for a Raw or a 2-D array); ``missing``: montage channels absent from the input (zeros, masked
    out); ``ignored``: input channels not in the montage (not used)."""

    embedding: torch.Tensor
    start_s: np.ndarray
    epoch: np.ndarray
    missing: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


class Run:
    """A trained run for notebooks: ``model`` (eval mode), ``datamodule`` (its data, as trained), ``run_dir``."""

    def __init__(self, loaded: LoadedRun):
        self.loaded = loaded
        self.model, self.datamodule, self.run_dir = loaded.model, loaded.datamodule, loaded.run_dir
        dm = self.datamodule
        self.ch_names: list[str] = list(dm.ch_names)
        self.sfreq: float = float(dm.sfreq)

    def __repr__(self) -> str:
        return (f"Run({self.run_dir}, {type(self.model).__name__}, {len(self.ch_names)} channels at "
                f"{self.sfreq:g} Hz, {self.datamodule.window_s:g}-s windows)")

    # ------------------------------------------------------------------------------------------------ embed
    def embed(self, x: Any, ch_names: Sequence[str] | None = None, sfreq: float | None = None,
              batch_size: int = 64) -> Embeddings:
        """Embeddings of every window of ``x``: an MNE ``Raw`` or ``Epochs`` (EEG channels, in volts), or an array
        ``[C, T]`` / ``[epochs, C, T]`` in µV with ``ch_names`` and ``sfreq``. Each recording (or epoch) is
        preprocessed whole, as ``prepare`` does, then cut into the run's windows."""
        data, names, rate = _as_recordings(x, ch_names, sfreq)
        index, missing, ignored = self._channel_map(names)
        if ignored:
            log.warning("run.embed: %d input channel(s) not in the run's montage, not used: %s", len(ignored),
                        ", ".join(ignored))
        if missing:
            log.warning("run.embed: %d montage channel(s) absent from the input, zeros and masked out: %s",
                        len(missing), ", ".join(missing))
        self._check_rate(rate)
        from datamodules.preprocess import preprocess_recording

        dm = self.datamodule
        windows, starts, epochs = [], [], []
        L, hop = int(round(dm.window_s * self.sfreq)), int(round(dm.stride_s * self.sfreq))
        for e, rec in enumerate(data):
            x_run = np.zeros((len(self.ch_names), rec.shape[1]), dtype=np.float64)
            have = index >= 0
            x_run[have] = rec[index[have]]
            y, _, _ = preprocess_recording(x_run, rate, dm.bandpass, dm.average_reference,
                                           None if rate == self.sfreq else self.sfreq, dm.scaling, dm.clip)
            if y.shape[1] < L:
                raise InputError("run.embed", f"{'epoch ' + str(e) + ' ' if len(data) > 1 else ''}is "
                                 f"{y.shape[1] / self.sfreq:.2f} s, shorter than one window ({dm.window_s:g} s)",
                                 "pass a longer recording")
            y[~have] = 0.0   # absent channels stay zero (scaling left them at 0 already; a reference would not)
            s = np.arange(0, y.shape[1] - L + 1, hop)
            windows.append(np.stack([y[:, i:i + L] for i in s]))
            starts.append(s / self.sfreq)
            epochs.append(np.full(len(s), e))
        eeg = torch.from_numpy(np.concatenate(windows)).float()
        mask = torch.from_numpy(np.repeat(have[None, :], len(eeg), axis=0))
        out = []
        with torch.no_grad():
            for i in range(0, len(eeg), batch_size):
                out.append(self.model.embed(eeg[i:i + batch_size], mask[i:i + batch_size]).detach().cpu())
        return Embeddings(torch.cat(out), np.concatenate(starts), np.concatenate(epochs), missing, ignored)

    def _channel_map(self, names: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
        """Index into the input per montage channel (-1: absent), matched by name (case-insensitive)."""
        where = {n.strip().lower(): i for i, n in enumerate(names)}
        index = np.array([where.get(n.lower(), -1) for n in self.ch_names])
        if not (index >= 0).any():
            raise InputError("run.embed: channel names", f"none of the input's {len(names)} channel names "
                             f"({', '.join(names[:4])}{', …' if len(names) > 4 else ''}) is in the run's montage "
                             f"({', '.join(self.ch_names[:4])}, …)",
                             "rename the channels to the montage's names (mne: raw.rename_channels({...}))")
        montage = {n.lower() for n in self.ch_names}
        missing = [n for n, i in zip(self.ch_names, index) if i < 0]
        ignored = [n for n in names if n.strip().lower() not in montage]
        return index, missing, ignored

    def _check_rate(self, rate: float) -> None:
        """A rate the run can take: at least the run's (no upsampling) and an exact polyphase ratio."""
        if not np.isfinite(rate) or rate <= 0:
            raise InputError("run.embed: sfreq", f"{rate} Hz is not a sampling rate", "pass the rate in Hz")
        if rate < self.sfreq:
            raise InputError("run.embed: sfreq", f"the EEG is at {rate:g} Hz, below the run's {self.sfreq:g} Hz "
                             "(upsampling cannot restore what the recording lacks)",
                             f"record at {self.sfreq:g} Hz or more, or use a run trained at a lower rate")
        up, down = polyphase_factors(rate, self.sfreq)
        if abs(rate * up / down - self.sfreq) > 1e-9 * self.sfreq:   # the windows would drift
            raise InputError("run.embed: sfreq", f"{rate:g} Hz -> {self.sfreq:g} Hz has no exact polyphase ratio "
                             f"(closest {up}/{down})", f"resample to {self.sfreq:g} Hz first (mne: raw.resample)")

    # ------------------------------------------------------------------------------------------------ evaluate
    def evaluate(self, datamodule: Any = None, out_dir: str | Path | None = None) -> dict:
        """The stage's ``test`` on ``datamodule`` (default: the run's own, its test split); its ``metrics.json``
        goes to ``out_dir`` (default: a new temporary folder, never the run's own) and is returned as a dict."""
        import json

        import lightning as L

        out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="chanmusic-evaluate-"))
        out.mkdir(parents=True, exist_ok=True)
        if (out / "metrics.json").exists():
            raise InputError(f"run.evaluate: out_dir {out}", "already holds a metrics.json",
                             "pass an empty folder (results are never overwritten)")
        trainer = L.Trainer(logger=False, callbacks=[], enable_checkpointing=False, accelerator="cpu", devices=1,
                            default_root_dir=str(out), enable_progress_bar=False, enable_model_summary=False)
        trainer.test(self.model, datamodule=datamodule or self.datamodule, verbose=False)
        self.model.eval()
        return json.loads((out / "metrics.json").read_text())


def load_run(path: str | Path, overrides: Sequence[str] = (), device: str = "cpu") -> Run:
    """A trained run (its folder, or one of its checkpoints beside its ``config.yaml``) as a :class:`Run`;
    ``overrides``: ``--data.*`` / ``--model.*`` arguments over its saved config (e.g. another ``--data.root``)."""
    return Run(_load(path, overrides=overrides, device=device))


def _as_recordings(x: Any, ch_names: Sequence[str] | None, sfreq: float | None
                   ) -> tuple[list[np.ndarray], list[str], float]:
    """``(recordings [C, T] µV float64, channel names, rate)`` of an MNE Raw / Epochs or an array."""
    try:
        import mne
    except ImportError:  # pragma: no cover - mne is a dependency
        mne = None
    if mne is not None and isinstance(x, (mne.io.BaseRaw, mne.BaseEpochs)):
        kind = "Raw" if isinstance(x, mne.io.BaseRaw) else "Epochs"
        if ch_names is not None or sfreq is not None:
            raise InputError(f"run.embed({kind})", "ch_names / sfreq given with an MNE object",
                             "drop them: the MNE object's own info is used")
        picks = mne.pick_types(x.info, eeg=True, exclude=())
        if len(picks) == 0:
            raise InputError(f"run.embed({kind})", "no EEG channels (channel types: "
                             f"{sorted(set(x.get_channel_types()))})", "set the types: raw.set_channel_types(...)")
        names = [x.ch_names[i] for i in picks]
        if any(not n.strip() for n in names):
            raise InputError(f"run.embed({kind})", "a channel without a name", "name every channel")
        data = x.get_data(picks=picks) * VOLTS_TO_UV
        recs = [data] if kind == "Raw" else list(data)
        return [np.asarray(r, dtype=np.float64) for r in recs], names, float(x.info["sfreq"])
    if ch_names is None or sfreq is None:
        raise InputError("run.embed(array)", "an array needs its channel names and sampling rate",
                         "call run.embed(x, ch_names=[...], sfreq=HZ) (or pass an mne Raw / Epochs)")
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim not in (2, 3) or arr.shape[-2] != len(ch_names):
        raise InputError("run.embed(array)", f"shape {tuple(arr.shape)} with {len(ch_names)} channel names",
                         "pass [channels, samples] or [epochs, channels, samples] in µV")
    recs = [arr] if arr.ndim == 2 else list(arr)
    return [np.asarray(r, dtype=np.float64) for r in recs], [str(n) for n in ch_names], float(sfreq)

"""The one log-mel spectrogram of chanmusic: AudioLDM's (16 kHz, n_fft 1024, hop 160, win 1024, 64 slaney mels
0-8000 Hz, magnitude STFT, ``log(clamp(x, 1e-5))``), and its constants.

transformers' ``audio_utils`` (for the filterbank) is imported on the first call only; the spectrogram itself is
pure torch.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from chanmusic.audio._common import to_numpy
from chanmusic.core.resample import resample

MEL_SR = 16000      #: AudioLDM's sample rate (Hz); also the rate AudioLDM generates at
MEL_N_FFT = 1024
MEL_WIN = 1024
MEL_HOP = 160       #: 10 ms frames: N = 1 + samples // 160 (centred STFT), so 5 s -> 501 frames
N_MELS = 64
MEL_FMIN = 0.0
MEL_FMAX = 8000.0
MEL_LOG_FLOOR = 1e-5  #: silence maps to log(1e-5)


@functools.lru_cache(maxsize=None)
def _mel_basis_np() -> np.ndarray:
    from transformers.audio_utils import mel_filter_bank

    # the Slaney-scale, Slaney-normalised bank (librosa.filters.mel's default; equal to it within 2e-9, tested)
    bank = mel_filter_bank(num_frequency_bins=MEL_N_FFT // 2 + 1, num_mel_filters=N_MELS, min_frequency=MEL_FMIN,
                           max_frequency=MEL_FMAX, sampling_rate=MEL_SR, norm="slaney", mel_scale="slaney")
    return np.ascontiguousarray(bank.T, dtype=np.float32)  # [64, 513]


_MEL_TORCH_CACHE: dict[tuple[str, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}


def _mel_tensors(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    key = (str(device), dtype)
    if key not in _MEL_TORCH_CACHE:
        basis = torch.from_numpy(_mel_basis_np()).to(device=device, dtype=dtype)
        window = torch.hann_window(MEL_WIN, periodic=True, device=device, dtype=dtype)
        _MEL_TORCH_CACHE[key] = (basis, window)
    return _MEL_TORCH_CACHE[key]


def mel_frames(n_samples: int) -> int:
    """Number of mel frames ``log_mel`` gives for ``n_samples`` samples at 16 kHz (``1 + n // 160``)."""
    return 1 + int(n_samples) // MEL_HOP


def log_mel(audio: Any, sr: int = MEL_SR) -> torch.Tensor:
    """AudioLDM's log-mel spectrogram of 16 kHz audio.

    ``audio``: ``[B, S]`` or ``[S]`` float (torch or numpy). If ``sr`` is not 16 kHz the audio is first resampled
    with :func:`chanmusic.core.resample.resample`. Returns float32 ``[B, 64, N]`` (or ``[64, N]`` for 1-D input) on
    the input's device, ``N = 1 + S // 160`` (5 s -> 501 frames).

    As in AudioLDM's ``TacotronSTFT``: a centred (reflect-padded) STFT with a periodic Hann window
    (n_fft = win = 1024, hop 160), magnitude (not power), a slaney-normalised mel filterbank equal to
    ``librosa.filters.mel``'s (64 bands, 0-8000 Hz), then ``log(clamp(x, 1e-5))``. The waveform is used as given
    (no loudness normalisation). Run time is pure torch; the filterbank is computed once and cached.
    """
    x = audio if isinstance(audio, torch.Tensor) else torch.from_numpy(to_numpy(audio))
    if int(sr) != MEL_SR:
        x = resample(x, sr, MEL_SR)
    if not x.is_floating_point():
        x = x.float()
    x = x.to(torch.float32)
    squeeze = x.ndim == 1
    if squeeze:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"log_mel expects [B, S] or [S] audio, got shape {tuple(x.shape)}")
    if x.shape[-1] <= MEL_N_FFT // 2:
        raise ValueError(f"log_mel needs more than {MEL_N_FFT // 2} samples, got {x.shape[-1]}")
    basis, window = _mel_tensors(x.device, x.dtype)
    spec = torch.stft(x, n_fft=MEL_N_FFT, hop_length=MEL_HOP, win_length=MEL_WIN, window=window, center=True,
                      pad_mode="reflect", normalized=False, onesided=True, return_complex=True).abs()
    mel = torch.log(torch.clamp(torch.matmul(basis, spec), min=MEL_LOG_FLOOR))
    return mel[0] if squeeze else mel

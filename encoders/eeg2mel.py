"""EEG2Mel (Ramirez-Aristizabal & Kello, 2022): a small CNN from an EEG "image" to the music mel spectrogram.

Published model (Keras, ``create_model`` in the authors' ``eeg_cnn_regressor_tutorial.py``), rebuilt in
PyTorch from its description:

    4 x [Conv2D k4 'same', ReLU, BatchNorm, Dropout 0.1]  with f, 2f, 4f, 8f filters (f = 8)
    Conv2D k4 stride 2 'same' 16f, ReLU -> ZeroPadding2D(1) -> BatchNorm -> MaxPool 2 -> BatchNorm
    Flatten -> Dropout 0.1 -> Dense 128 ReLU -> BatchNorm -> Dropout 0.15 -> Dense 128 ReLU -> BatchNorm
    -> Dense (n_mels x n_frames), linear

Input image: the per-channel power spectrum, ``frequency x channel`` (the paper: 1-s windows at 125 Hz ->
``scipy.signal.periodogram`` -> 63 x 125), or the raw window ``time x channel`` (``features="raw"``).
Keras conventions kept: 'same' padding puts the extra row/column after (TensorFlow), BatchNorm
``eps=1e-3, momentum=0.01`` (Keras 0.99).

Our choices where the paper's data differ from this pipeline: windows are 2 s by default, so the spectrum
is the mean of the periodograms of non-overlapping ``psd_segment_s`` (default 1 s, the paper's window)
segments (Welch, boxcar, constant detrend; density scaling as scipy's), giving the paper's 63-bin image;
its log10 is taken (``log_psd``; the raw power spans decades). Absent channels (``channel_mask`` False)
are zero columns of the image (after the log).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from encoders.base import EEGEncoder, EncoderOutput

FEATURES = ("psd", "raw")


KERAS_BN_MOMENTUM = 0.01  # Keras BatchNormalization(momentum=0.99): running = 0.99 running + 0.01 batch


def _bn2d(c: int, momentum: float | None = KERAS_BN_MOMENTUM) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=momentum)


def _bn1d(c: int, momentum: float | None = KERAS_BN_MOMENTUM) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(c, eps=1e-3, momentum=momentum)


class _TFSameConv2d(nn.Conv2d):
    """``Conv2d`` with TensorFlow 'same' padding (extra pad after), any stride."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:][::-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def periodogram(x: Tensor, fs: float, segment: int) -> Tensor:
    """Mean one-sided periodogram (density, boxcar, constant detrend) over non-overlapping segments.

    ``x [B, C, T]`` -> ``[B, segment // 2 + 1, C]``; equals ``scipy.signal.periodogram`` when
    ``segment == T`` (and ``scipy.signal.welch(window="boxcar", noverlap=0)`` otherwise).
    """
    n_seg = x.shape[-1] // segment
    if n_seg < 1:
        raise ValueError(f"window of {x.shape[-1]} samples is shorter than one PSD segment ({segment})")
    s = x[..., : n_seg * segment].unflatten(-1, (n_seg, segment))
    s = s - s.mean(-1, keepdim=True)
    p = torch.fft.rfft(s, dim=-1).abs().pow(2) / (fs * segment)
    p[..., 1: segment - segment // 2] *= 2  # one-sided: double all but DC (and Nyquist for even lengths)
    return p.mean(-2).transpose(1, 2)


class EEG2Mel(EEGEncoder):
    """The EEG2Mel CNN as an ``EEGEncoder``: ``pooled`` is the 128-d penultimate embedding; ``predict_mel``
    gives the mel spectrogram ``[B, n_mels, n_frames]``.

    Train it with ``chanmusic.stages.eeg2mel.EEG2MelModule`` (MSE on the normalised cached mels, optionally
    InfoNCE of the embedding to CLAP). Output: ``pooled [B, 128]``, ``tokens [B, 1, 128]`` (the same
    vector), ``token_time [1]``.

    Args:
        n_mels, n_frames: the mel target's shape (the cache's 2-s windows: 64 x 201). Not linked by the CLI;
            the stage checks them against the first batch.
        features: ``"psd"`` (the paper's input) or ``"raw"`` (the window itself, time x channel).
        psd_segment_s: PSD segment length in seconds (1 s = the paper's window).
        log_psd: take ``log10(psd + 1e-12)``.
        base_filters: ``f`` (paper: 8; filters f, 2f, 4f, 8f, then 16f).
        kernel_size: convolution kernel (paper: 4).
        embed_dim: width of the two dense layers (paper: 128).
        bn_momentum: weight of each batch in the BatchNorm running statistics the model is evaluated with (Keras'
            0.99 -> 0.01, the default, fits the paper's 200 epochs; after ``n`` steps the statistics are still
            ``(1 - bn_momentum)**n`` their initial 0 / 1 — after 40 steps 67 % — so a short run needs a larger value,
            e.g. PyTorch's 0.1, or ``None``: the cumulative average). See docs/encoders.md.
    """

    def __init__(self, n_channels: int, sfreq: float, n_times: int, ch_names: Sequence[str] | None = None, *,
                 n_mels: int = 64, n_frames: int = 201, features: str = "psd", psd_segment_s: float = 1.0,
                 log_psd: bool = True, base_filters: int = 8, kernel_size: int = 4, embed_dim: int = 128,
                 bn_momentum: float | None = KERAS_BN_MOMENTUM):
        super().__init__(n_channels, sfreq, n_times, ch_names)
        if features not in FEATURES:
            raise ValueError(f"features: {features!r} is not one of {FEATURES}")
        self.n_mels, self.n_frames = int(n_mels), int(n_frames)
        self.features, self.log_psd = features, log_psd
        self.segment = min(n_times, int(round(psd_segment_s * sfreq)))
        self.embed_dim = embed_dim
        rows = self.segment // 2 + 1 if features == "psd" else n_times
        f, k = base_filters, kernel_size
        layers: list[nn.Module] = []
        c_in = 1
        for c in (f, 2 * f, 4 * f, 8 * f):
            layers += [_TFSameConv2d(c_in, c, k), nn.ReLU(), _bn2d(c, bn_momentum), nn.Dropout(0.1)]
            c_in = c
        layers += [_TFSameConv2d(c_in, 16 * f, k, stride=2), nn.ReLU(), nn.ZeroPad2d(1), _bn2d(16 * f, bn_momentum),
                   nn.MaxPool2d(2), _bn2d(16 * f, bn_momentum), nn.Flatten()]
        self.conv = nn.Sequential(*layers)
        h, w = (math.ceil(rows / 2) + 2) // 2, (math.ceil(n_channels / 2) + 2) // 2
        self.image_shape = (rows, n_channels)
        self.dense = nn.Sequential(
            nn.Dropout(0.1), nn.Linear(16 * f * h * w, embed_dim), nn.ReLU(), _bn1d(embed_dim, bn_momentum),
            nn.Dropout(0.15), nn.Linear(embed_dim, embed_dim), nn.ReLU(), _bn1d(embed_dim, bn_momentum))
        self.out = nn.Linear(embed_dim, self.n_mels * self.n_frames)
        self.register_buffer("token_time", torch.zeros(1, dtype=torch.long), persistent=False)

    def image(self, eeg: Tensor, channel_mask: Tensor | None = None) -> Tensor:
        """EEG ``[B, C, T]`` -> the network's input image ``[B, 1, rows, C]``."""
        self.check_input(eeg, channel_mask)
        if self.features == "psd":
            img = periodogram(eeg.float(), self.sfreq, self.segment)
            if self.log_psd:
                img = torch.log10(img + 1e-12)
        else:
            img = eeg.transpose(1, 2)
        if channel_mask is not None:
            img = img * channel_mask.unsqueeze(1).to(img.dtype)
        return img.unsqueeze(1)

    def forward_all(self, eeg: Tensor, channel_mask: Tensor | None = None) -> tuple[EncoderOutput, Tensor]:
        """One pass -> (:class:`EncoderOutput`, mel ``[B, n_mels, n_frames]``)."""
        z = self.dense(self.conv(self.image(eeg, channel_mask)))
        mel = self.out(z).unflatten(-1, (self.n_mels, self.n_frames))
        return EncoderOutput(z, z.unsqueeze(1), self.token_time), mel

    def forward(self, eeg: Tensor, channel_mask: Tensor | None = None) -> EncoderOutput:
        return self.forward_all(eeg, channel_mask)[0]

    def predict_mel(self, eeg: Tensor, channel_mask: Tensor | None = None) -> Tensor:
        """EEG ``[B, C, T]`` -> mel ``[B, n_mels, n_frames]`` (in the stage's normalised mel units)."""
        return self.forward_all(eeg, channel_mask)[1]

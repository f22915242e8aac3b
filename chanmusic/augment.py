"""EEG augmentations, apart from the training loop: structured channel dropout."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class ChannelDropout(nn.Module):
    """Per sample, mark a random subset of whole channels absent in ``channel_mask`` (train mode only).

    The mask is what encoders act on: channel-wise encoders *remove* the tokens of absent channels,
    others zero-fill them. ``mode="random"`` drops ``rate`` of the present electrodes uniformly.

    Args:
        rate: fraction of channels to drop per sample.
        mode: ``"random"``.
    """

    MODES = ("random",)

    def __init__(self, rate: float = 0.2, mode: str = "random"):
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"channel dropout rate must be in [0, 1), got {rate}")
        if mode not in self.MODES:
            raise ValueError(f"channel dropout mode {mode!r} is not one of {self.MODES}")
        self.rate, self.mode = rate, mode

    def forward(self, channel_mask: Tensor) -> Tensor:
        """channel_mask ``[B, C]`` bool -> ``[B, C]`` bool with extra channels set False."""
        if not self.training or self.rate == 0.0:
            return channel_mask
        B, C = channel_mask.shape
        n_drop = int(C * self.rate)
        scores = torch.rand(B, C, device=channel_mask.device).masked_fill(~channel_mask, 2.0)
        drop = scores.argsort(dim=1)[:, :n_drop]
        return channel_mask.scatter(1, drop, False)

"""The paper's genre score needs a music-genre audio classifier: a transformers audio-classification model
(local folder or hub id) that labels generated and true audio (``chanmusic.stages.reconstruct``'s
``genre_agreement``)."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["AudioClassifier"]


class AudioClassifier:
    """A transformers audio-classification model (local folder or hub id): ``labels(audio, sr) -> [B]`` argmax ids.

    For the paper's genre score (a music-genre classifier, e.g. ``dima806/music_genres_classification``, run on the
    generated and the true audio; agreement of the two labels). Audio is resampled to the feature extractor's rate.
    """

    def __init__(self, spec: str, device: str | torch.device = "cpu"):
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        self.spec = str(spec)
        self.device = torch.device(device)
        self.fe = AutoFeatureExtractor.from_pretrained(self.spec)
        self.model = AutoModelForAudioClassification.from_pretrained(self.spec).to(self.device).eval()
        self.id2label = dict(getattr(self.model.config, "id2label", {}) or {})

    @torch.no_grad()
    def labels(self, audio: np.ndarray | Tensor, sr: int, batch_size: int = 16) -> Tensor:
        from chanmusic.audio import resample

        x = audio.detach().cpu().float().numpy() if isinstance(audio, Tensor) else np.asarray(audio, np.float32)
        if x.ndim == 1:
            x = x[None]
        rate = int(getattr(self.fe, "sampling_rate", sr))
        out = []
        for i in range(0, len(x), batch_size):
            clips = [resample(c, sr, rate) for c in x[i:i + batch_size]]
            feats = self.fe(clips, sampling_rate=rate, return_tensors="pt", padding=True)
            feats = {k: v.to(self.device) for k, v in feats.items() if isinstance(v, Tensor)}
            out.append(self.model(**feats).logits.argmax(-1).cpu())
        return torch.cat(out)

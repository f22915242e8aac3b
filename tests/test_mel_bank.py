"""The mel filter bank (taken from transformers, already a dependency) equals librosa's Slaney bank, the reference
AudioLDM's mel features were defined with."""
from __future__ import annotations

import librosa
import numpy as np

from chanmusic.audio import mel


def test_mel_bank_matches_librosa_to_float_precision():
    mel._mel_basis_np.cache_clear()
    ours = mel._mel_basis_np()
    ref = librosa.filters.mel(sr=mel.MEL_SR, n_fft=mel.MEL_N_FFT, n_mels=mel.N_MELS, fmin=mel.MEL_FMIN,
                              fmax=mel.MEL_FMAX, htk=False, norm="slaney")
    assert ours.shape == ref.shape == (64, 513) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-8)

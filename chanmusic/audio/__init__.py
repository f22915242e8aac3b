"""Audio side of chanmusic: AudioLDM's mel spectrogram, a CLAP audio embedder and an AudioLDM generator.

Everything heavy (transformers, diffusers, laion-clap, scipy) is imported inside the functions that
need it, so ``import chanmusic.audio`` is cheap.

Public surface (re-exported here from the modules that own it)
--------------------------------------------------------------
``log_mel(audio, sr=16000)``, ``mel_frames(n)`` — :mod:`chanmusic.audio.mel`
    AudioLDM's log-mel spectrogram (16 kHz, n_fft 1024, hop 160, win 1024, 64 slaney mels 0-8000 Hz, magnitude
    STFT, ``log(clamp(x, 1e-5))``). ``MEL_SR``, ``MEL_HOP``, ``N_MELS``, ``MEL_N_FFT`` give the constants.
``ClapEmbedder.from_config(spec, device="cpu", seed=0)`` / ``load_clap(spec, ...)`` — :mod:`chanmusic.audio.clap`
    CLAP *audio* embeddings, L2-normalised, from a laion-clap ``.pt`` file (:mod:`chanmusic.audio.clap_laion`), a
    transformers CLAP (local directory or hub id) or ``"tiny-random"`` (a tiny randomly initialised CLAP for
    offline demos and tests; both :mod:`chanmusic.audio.clap_hf`).
``AudioLDMGenerator.load(spec, device="cpu", seed=0)`` / ``load_audioldm`` — :mod:`chanmusic.audio.audioldm`
    AudioLDM 1 (diffusers) conditioned on a 512-d CLAP embedding, from a local diffusers directory, a hub id or
    ``"tiny-random"``.
``resample(audio, sr_from, sr_to)`` (:func:`chanmusic.core.resample.resample`, the project's one offline
resampler), ``write_wav(path, audio, sr)`` (:mod:`chanmusic.audio.wav`).

Random models announce themselves: a logged warning at load, ``is_random = True`` and a ``description`` that
says the outputs carry no pretrained meaning.
"""
from chanmusic.audio._common import CLAP_CLIP_SAMPLES, CLAP_DIM, CLAP_SR, TINY_RANDOM
from chanmusic.audio.audioldm import AudioLDMGenerator, load_audioldm
from chanmusic.audio.clap import ClapEmbedder, load_clap
from chanmusic.audio.mel import (MEL_FMAX, MEL_FMIN, MEL_HOP, MEL_LOG_FLOOR, MEL_N_FFT, MEL_SR, MEL_WIN, N_MELS,
                                 log_mel, mel_frames)
from chanmusic.audio.wav import write_wav
from chanmusic.core.resample import resample

__all__ = [
    "MEL_SR", "MEL_HOP", "MEL_N_FFT", "MEL_WIN", "N_MELS", "MEL_FMIN", "MEL_FMAX", "MEL_LOG_FLOOR",
    "CLAP_SR", "CLAP_CLIP_SAMPLES", "CLAP_DIM", "TINY_RANDOM",
    "log_mel", "mel_frames", "resample", "write_wav",
    "ClapEmbedder", "load_clap", "AudioLDMGenerator", "load_audioldm",
]

"""Log-mel front end of the speaker encoder, matching the official one (librosa slaney filterbank, torch STFT).

audio (B, N) float at 24 kHz -> reflect pad (n_fft - hop) / 2 per side -> STFT n_fft 1024, hop 256, Hann 1024,
center=False -> magnitude sqrt(re^2 + im^2 + 1e-9) -> 128 slaney-normalised mel bins over 0..12 kHz ->
log(clamp(x, 1e-5)) -> (B, T, 128) with T = (N + 768 - 1024) // 256 + 1.
The filterbank is our own implementation of the slaney mel scale (librosa is not a dependency).
"""

from __future__ import annotations

import numpy as np
import torch

N_FFT = 1024
HOP = 256
WIN = 1024
N_MELS = 128
SAMPLE_RATE = 24_000
FMIN = 0.0
FMAX = 12_000.0
MAG_EPS = 1e-9
LOG_CLAMP = 1e-5

# Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above (27 mels per factor 6.4).
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel of frequencies in Hz (float64)."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    log_part = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, log_part, linear)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of ``hz_to_mel`` (float64)."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _F_SP
    log_part = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log_part, linear)


def slaney_mel_filterbank(
    sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = FMIN, fmax: float = FMAX
) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32 triangular filters, each scaled by 2 / (its bandwidth in Hz) (slaney norm)."""
    if not 0 <= fmin < fmax <= sr / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= sr/2, got fmin={fmin}, fmax={fmax}, sr={sr}")
    fft_hz = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))  # (n_mels + 2,)
    widths = np.diff(edges)
    offsets = edges[:, None] - fft_hz[None, :]  # (n_mels + 2, n_freqs)
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def log_mel_spectrogram(audio: torch.Tensor) -> torch.Tensor:
    """audio (B, N) float32 at 24 kHz -> log-mel (B, T, 128); needs N >= 256 samples."""
    if audio.ndim != 2:
        raise ValueError(f"audio must be (batch, samples), got shape {tuple(audio.shape)}")
    pad = (N_FFT - HOP) // 2
    if audio.shape[-1] + 2 * pad < N_FFT or audio.shape[-1] <= pad:
        raise ValueError(f"audio too short for the mel front end: {audio.shape[-1]} samples (need > {pad})")
    audio = audio.float()
    padded = torch.nn.functional.pad(audio.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    window = torch.hann_window(WIN, device=audio.device)
    spec = torch.stft(padded, N_FFT, hop_length=HOP, win_length=WIN, window=window, center=False, return_complex=True)
    magnitude = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + MAG_EPS)  # (B, n_freqs, T)
    basis = torch.from_numpy(slaney_mel_filterbank()).to(audio.device)
    mel = torch.matmul(basis, magnitude)
    return torch.log(torch.clamp(mel, min=LOG_CLAMP)).transpose(1, 2)

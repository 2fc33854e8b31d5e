"""Synthetic audio clips shared by tests (no recordings in the repository)."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf


def voiced_wav_bytes(seconds: float, sample_rate: int = 16_000) -> bytes:
    """A 180 Hz tone with noisy amplitude, as WAV file bytes: enough like a voice for cloning and x-vectors."""
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    audio = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.3 * rng.standard_normal(len(t)))
    buf = io.BytesIO()
    sf.write(buf, audio.astype(np.float32), sample_rate, format="WAV")
    return buf.getvalue()

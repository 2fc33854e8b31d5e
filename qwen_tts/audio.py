"""Reference-audio input: read, validate, mix to mono and resample, before any model work.

``load_audio(path_or_bytes)`` -> (float32 mono (N,), sample_rate). Every problem raises ``AudioError`` whose ``kind``
says which: ``unreadable`` (missing file, permission), ``empty`` (no bytes or no samples), ``not_audio`` (format not
recognised), ``truncated`` (the file ends before its header says it should), ``too_long`` (over ``max_seconds``,
60 s by default), ``invalid`` (NaN or infinite samples).
"""

from __future__ import annotations

import io
import logging
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEFAULT_MAX_SECONDS = 60.0


_LABELS = {
    "unreadable": "unreadable audio",
    "empty": "empty audio",
    "not_audio": "not an audio file",
    "truncated": "truncated audio",
    "too_long": "audio too long",
    "invalid": "invalid audio",
}


class AudioError(ValueError):
    """Bad reference audio; ``kind`` is one of unreadable, empty, not_audio, truncated, too_long, invalid."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{_LABELS.get(kind, kind)}: {message}")
        self.kind = kind


def to_mono(audio: np.ndarray) -> np.ndarray:
    """(N,) or (N, channels) -> (N,) float32 by averaging channels. A (channels, N) array (fewer rows than columns)
    is accepted too."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        return audio
    if audio.ndim != 2:
        raise ValueError(f"audio must be (samples,) or (samples, channels), got shape {audio.shape}")
    channel_axis = 0 if audio.shape[0] < audio.shape[1] else 1
    return audio.mean(axis=channel_axis).astype(np.float32)


def resample(audio: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling of mono float audio (N,) with soxr (HQ); returns float32.

    HQ, not VHQ: it is what the official package gets from ``librosa.resample`` (res_type "soxr_hq"), so x-vectors and
    encoder codes of non-24 kHz references match it bit for bit (VHQ differs by up to ~5e-3 per sample). The output
    has ``resampled_length(N, sr, target_sr)`` samples: soxr alone returns one fewer for about half of all lengths at
    44.1/22.05/32/11.025 kHz, which the official path pads back with a zero (librosa's ``fix_length``).
    """
    if sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {sr} -> {target_sr}")
    if sr == target_sr:
        return np.asarray(audio, dtype=np.float32)
    import soxr

    out = soxr.resample(np.asarray(audio, dtype=np.float32), sr, target_sr, quality="HQ").astype(np.float32)
    return _fit_length(out, resampled_length(len(audio), sr, target_sr))


def resampled_length(n_samples: int, sr: int, target_sr: int) -> int:
    """Samples after resampling ``n_samples`` from ``sr`` to ``target_sr``: ceil(N x ratio) computed in float64 with the
    ratio rounded first, exactly as ``librosa.resample`` does (an exact rational ceil differs when N x ratio is whole
    but the float product lands just above it)."""
    return int(np.ceil(n_samples * (float(target_sr) / sr)))


def _fit_length(audio: np.ndarray, size: int) -> np.ndarray:
    if len(audio) >= size:
        return audio[:size]
    return np.concatenate([audio, np.zeros(size - len(audio), dtype=audio.dtype)])


def validate_audio(audio: np.ndarray, sr: int, max_seconds: float | None = DEFAULT_MAX_SECONDS) -> np.ndarray:
    """Check an in-memory clip the way ``load_audio`` checks a file; returns it as float32 mono (N,).

    Raises AudioError (a ValueError): ``empty`` for no samples, ``invalid`` for NaN/inf or a non-positive rate,
    ``too_long`` beyond ``max_seconds``.
    """
    if int(sr) <= 0:
        raise AudioError("invalid", f"sample rate must be positive, got {sr}")
    wave = to_mono(np.asarray(audio, dtype=np.float32))
    if wave.size == 0:
        raise AudioError("empty", "the clip has no samples")
    if not np.isfinite(wave).all():
        raise AudioError("invalid", "the clip contains NaN or infinite samples")
    if max_seconds is not None and wave.size > max_seconds * sr:
        raise AudioError("too_long", f"the clip lasts {wave.size / sr:.1f} s, the limit is {max_seconds:g} s")
    return wave


def model_input(audio: np.ndarray | torch.Tensor, sr: int, target_sr: int) -> np.ndarray:
    """An in-memory clip (numpy or torch, (N,) or (N, channels)) checked with no length limit, as float32 mono (N,)
    at ``target_sr``: what the codec encoder and the speaker encoder take."""
    import torch

    if isinstance(audio, torch.Tensor):
        audio = audio.detach().float().cpu().numpy()
    return resample(validate_audio(audio, sr, max_seconds=None), int(sr), target_sr)


def _read_source(source: str | Path | bytes | bytearray) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>"
    path = Path(source)
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise AudioError("unreadable", f"cannot read {path}: {exc.strerror or exc}") from exc


def _wav_data_shortfall(data: bytes) -> int:
    """Bytes missing from a RIFF/WAVE data chunk (0 when complete or not a WAV). libsndfile silently reads less."""
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        return 0
    endian = "<" if data[:4] == b"RIFF" else ">"
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack(endian + "I", data[pos + 4 : pos + 8])
        if chunk_id == b"data":
            if size in (0, 0xFFFFFFFF):  # streaming writers leave the size unset
                return 0
            return max(0, pos + 8 + size - len(data))
        pos += 8 + size + (size & 1)
    return 0


def load_audio(
    source: str | Path | bytes | bytearray, max_seconds: float | None = DEFAULT_MAX_SECONDS
) -> tuple[np.ndarray, int]:
    """Read a sound file (path or bytes) into float32 mono (N,) and its sample rate; raise AudioError if unusable."""
    import soundfile as sf

    data, name = _read_source(source)
    if not data:
        raise AudioError("empty", f"{name} has no bytes")
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError("not_audio", f"{name} is not a recognised sound file ({exc})") from exc
    shortfall = _wav_data_shortfall(data)
    if shortfall:
        raise AudioError("truncated", f"{name} ends {shortfall} bytes before its WAV header says it should")
    if max_seconds is not None and info.frames > max_seconds * info.samplerate:
        raise AudioError(
            "too_long", f"{name} lasts {info.frames / info.samplerate:.1f} s, the limit is {max_seconds:g} s"
        )
    try:
        audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError("truncated", f"{name} could not be decoded to the end ({exc})") from exc
    if audio.shape[0] == 0:
        raise AudioError("empty", f"{name} contains no samples (empty, or cut off before the first one)")
    if audio.shape[0] < info.frames:
        raise AudioError("truncated", f"{name} holds {audio.shape[0]} of the {info.frames} frames its header declares")
    if not np.isfinite(audio).all():
        raise AudioError("invalid", f"{name} contains NaN or infinite samples")
    return audio.mean(axis=1).astype(np.float32), int(sr)

"""Fit a rendered master into one Discord attachment: WAV if it fits, else FLAC, else Opus, else nothing.

`attachment_for(wav_path, limit_bytes)` is blocking (it may encode); call it through `asyncio.to_thread`.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Headroom under the limit for the multipart envelope and JSON payload that travel with the file.
ENVELOPE_BYTES = 16 * 1024


@dataclass(frozen=True)
class Attachment:
    filename: str
    data: bytes
    format: str  # wav | flac | opus


def _encode(audio, sample_rate: int, fmt: str, subtype: str | None) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, audio, sample_rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def attachment_for(wav_path: Path, limit_bytes: int, stem: str | None = None) -> Attachment | None:
    """The smallest-effort encoding of the master that fits `limit_bytes`, or None when even Opus is too big."""
    import soundfile as sf

    budget = limit_bytes - ENVELOPE_BYTES
    stem = stem or wav_path.stem
    if wav_path.stat().st_size <= budget:
        return Attachment(f"{stem}.wav", wav_path.read_bytes(), "wav")
    audio, sample_rate = sf.read(str(wav_path), dtype="float32")
    for fmt, subtype, ext in (("FLAC", "PCM_16", "flac"), ("OGG", "OPUS", "ogg")):
        try:
            data = _encode(audio, sample_rate, fmt, subtype)
        except (sf.LibsndfileError, ValueError, RuntimeError) as exc:
            log.warning("could not encode %s as %s: %s", wav_path, fmt, exc)
            continue
        if len(data) <= budget:
            return Attachment(f"{stem}.{ext}", data, "flac" if ext == "flac" else "opus")
    return None

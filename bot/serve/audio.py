"""Audio on the wire: float32 engine chunks -> pcm (s16le), pcm_f32 (ours, lossless), a streamed WAV, or a whole
FLAC / Ogg-Opus / MP3 file (soundfile; MP3 only where this libsndfile can write it); SSE framing of deltas."""

from __future__ import annotations

import base64
import io
import json
import struct

import numpy as np

CONTENT_TYPES = {
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "pcm_f32": "application/octet-stream",
    "flac": "audio/flac",
    "opus": "audio/ogg",
    "mp3": "audio/mpeg",
}
_WHOLE_FILE = {"flac": ("FLAC", "PCM_16"), "opus": ("OGG", "OPUS"), "mp3": ("MP3", "MPEG_LAYER_III")}
UNKNOWN_SIZE = 0xFFFFFFFF  # a streamed WAV's sizes are not known yet (players read to the end)


def supported_formats() -> tuple[str, ...]:
    """The response formats this machine can write: pcm, pcm_f32 and wav always; the rest as libsndfile allows."""
    import soundfile as sf

    available = sf.available_formats()
    whole = [name for name, (container, subtype) in _WHOLE_FILE.items()
             if container in available and subtype in sf.available_subtypes(container)]  # fmt: skip
    return ("wav", "pcm", "pcm_f32", *whole)


def s16le(chunk: np.ndarray) -> bytes:
    return (np.clip(chunk, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def f32le(chunk: np.ndarray) -> bytes:
    return np.ascontiguousarray(chunk, dtype="<f4").tobytes()


def wav_stream_header(sample_rate: int) -> bytes:
    """RIFF/WAVE header of 16-bit mono PCM whose length is not known yet."""
    byte_rate = sample_rate * 2
    return (b"RIFF" + struct.pack("<I", UNKNOWN_SIZE) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate,
            byte_rate, 2, 16) + b"data" + struct.pack("<I", UNKNOWN_SIZE))  # fmt: skip


def encode_chunk(chunk: np.ndarray, response_format: str) -> bytes:
    """One streamed chunk: float32 for pcm_f32, s16le for pcm and wav (after the header)."""
    return f32le(chunk) if response_format == "pcm_f32" else s16le(chunk)


def encode_file(audio: np.ndarray, sample_rate: int, response_format: str) -> bytes:
    """A whole file (wav with exact sizes, flac, opus, mp3)."""
    import soundfile as sf

    if response_format == "wav":
        container, subtype = "WAV", "PCM_16"
    else:
        container, subtype = _WHOLE_FILE[response_format]
    out = io.BytesIO()
    sf.write(out, np.clip(audio, -1.0, 1.0), sample_rate, format=container, subtype=subtype)
    return out.getvalue()


def sse_event(payload: dict) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def sse_delta(pcm: bytes) -> bytes:
    return sse_event({"type": "speech.audio.delta", "audio": base64.b64encode(pcm).decode("ascii")})

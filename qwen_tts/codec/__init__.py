"""Qwen3-TTS-Tokenizer-12Hz: 16 codebooks at 12.5 Hz <-> 24 kHz mono audio.

``Codec`` is the entry point (``Codec.from_pretrained(dir)``, ``encode``, ``decode``, ``stream_decoder``). Exports are
resolved lazily so importing this package stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Codec", "CodecConfig", "CodecDecoder", "CodecDecoderConfig", "StreamingDecoder", "write_tiny_codec"]

_WHERE = {
    "Codec": "qwen_tts.codec.codec",
    "CodecConfig": "qwen_tts.codec.config",
    "CodecDecoderConfig": "qwen_tts.codec.config",
    "CodecDecoder": "qwen_tts.codec.decoder",
    "StreamingDecoder": "qwen_tts.codec.streaming",
    "write_tiny_codec": "qwen_tts.codec.tiny",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'qwen_tts.codec' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_WHERE[name]), name)

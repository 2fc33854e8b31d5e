"""Our own implementation of Qwen3-TTS 12 Hz: checkpoint in, codes and 24 kHz audio out.

This package knows nothing of Discord, the database or the bot. The public names below are imported lazily, so
``import qwen_tts`` stays cheap (no torch work, no file I/O).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["AudioError", "CheckpointError", "Codec", "QwenTTS", "SamplingParams", "SynthesisRequest", "load_audio"]

_WHERE = {
    "QwenTTS": "qwen_tts.api",
    "SynthesisRequest": "qwen_tts.api",
    "SamplingParams": "qwen_tts.sampling",
    "Codec": "qwen_tts.codec",
    "AudioError": "qwen_tts.audio",
    "CheckpointError": "qwen_tts.checkpoint",
    "load_audio": "qwen_tts.audio",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'qwen_tts' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

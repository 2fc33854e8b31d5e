"""The body of `POST /v1/audio/speech`, checked field by field into a frozen `SpeechParams`.

OpenAI fields: model, input, voice, response_format, speed, instructions. vLLM-Omni extensions: task_type, language,
ref_audio, ref_text, x_vector_only_mode, max_new_tokens, stream, stream_format. Ours: `seed`, the Identity Lock
fields a bot sends so a remote render equals a local one (`speaker`, `timbre`), `script` (false: `input` is one plain
segment, no tags parsed) and `latency_critical` (small first chunks). Unknown fields are ignored, as OpenAI-style
servers do (clients send their own extras). Each bad field is one ApiError naming it.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any

from bot.serve.errors import bad

FORMATS = ("wav", "pcm", "flac", "opus", "mp3", "pcm_f32")  # pcm_f32: ours, float32 LE (what RemoteEngine reads)
STREAMABLE = ("wav", "pcm", "pcm_f32")
TASK_TYPES = ("CustomVoice", "VoiceDesign", "Base")
STREAM_FORMATS = ("audio", "sse")
MAX_INSTRUCTIONS_CHARS = 500
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class SpeechParams:
    model: str | None
    input: str
    voice: str | None
    response_format: str
    instructions: str | None
    task_type: str | None
    language: str
    ref_audio: bytes | None
    ref_text: str | None
    x_vector_only_mode: bool
    max_new_tokens: int | None
    stream: str | None  # None (one response body, streamed for pcm) | "audio" (raw chunks) | "sse"
    seed: int
    speaker: str | None
    timbre: tuple[float, ...] | None
    script: bool
    latency_critical: bool


def parse_speech(body: Any, *, max_input_chars: int, max_new_tokens: int, formats: tuple[str, ...]) -> SpeechParams:
    if not isinstance(body, dict):
        raise bad("The request body must be a JSON object with at least `input`.")
    text = _input(body.get("input"), max_input_chars)
    response_format = _choice(body, "response_format", formats, "wav")
    _speed(body.get("speed", 1.0))
    stream = _stream(body, response_format)
    return SpeechParams(
        model=_optional_str(body, "model", 200),
        input=text,
        voice=_optional_str(body, "voice", 200),
        response_format=response_format,
        instructions=_optional_str(body, "instructions", MAX_INSTRUCTIONS_CHARS),
        task_type=_choice(body, "task_type", TASK_TYPES, None),
        language=(_optional_str(body, "language", 40) or "auto").lower(),
        ref_audio=_ref_audio(body.get("ref_audio")),
        ref_text=_optional_str(body, "ref_text", max_input_chars),
        x_vector_only_mode=_bool(body, "x_vector_only_mode", False),
        max_new_tokens=_int(body, "max_new_tokens", 1, max_new_tokens),
        stream=stream,
        seed=_int(body, "seed", 0, MAX_SEED) or 0,
        speaker=_optional_str(body, "speaker", 200),
        timbre=_timbre(body.get("timbre")),
        script=_bool(body, "script", True),
        latency_critical=_bool(body, "latency_critical", True),
    )


def _input(value: Any, max_chars: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise bad("`input` must be a non-empty string: the text (or script) to speak.", "input", "missing_input")
    if len(value) > max_chars:
        raise bad(f"`input` is {len(value)} characters long; this server accepts at most {max_chars}.", "input",
                  "input_too_long")  # fmt: skip
    return value


def _speed(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad("`speed` must be a number; this server only speaks at 1.0.", "speed")
    if value != 1.0:
        raise bad(f"`speed` {value} is not supported: this server only speaks at 1.0 (the model's own pace).",
                  "speed", "unsupported_speed")  # fmt: skip


def _stream(body: dict, response_format: str) -> str | None:
    stream_format = _choice(body, "stream_format", STREAM_FORMATS, None)
    streamed = _bool(body, "stream", False)
    mode = stream_format or ("sse" if streamed else None)
    if mode is not None and response_format not in STREAMABLE:
        raise bad(f"Streaming needs `response_format` pcm or wav, not {response_format}.", "response_format",
                  "unsupported_stream_format")  # fmt: skip
    return mode


def _choice(body: dict, name: str, allowed: tuple[str, ...], default: str | None) -> str | None:
    value = body.get(name)
    if value is None:
        return default
    if value not in allowed:
        raise bad(f"`{name}` must be one of {', '.join(allowed)}, not {value!r}.", name)
    return value


def _optional_str(body: dict, name: str, max_chars: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad(f"`{name}` must be a string.", name)
    if len(value) > max_chars:
        raise bad(f"`{name}` is {len(value)} characters long; the limit is {max_chars}.", name)
    return value.strip() or None


def _bool(body: dict, name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise bad(f"`{name}` must be true or false.", name)
    return value


def _int(body: dict, name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad(f"`{name}` must be a whole number from {low} to {high}, got {value!r}.", name)
    return value


def _timbre(value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    ok = isinstance(value, list) and 0 < len(value) <= 16384
    ok = ok and all(not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x) for x in value)
    if not ok:
        raise bad("`timbre` must be a list of finite numbers (the locked voice's x-vector).", "timbre")
    return tuple(float(x) for x in value)


def _ref_audio(value: Any) -> bytes | None:
    """A base64 clip or a `data:audio/...;base64,` URL; this server never fetches http(s) URLs."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise bad("`ref_audio` must be a base64 audio clip or a data: URL.", "ref_audio")
    if value.startswith(("http://", "https://", "file:")):
        raise bad("`ref_audio` must carry the clip itself (base64 or a data: URL); this server fetches no URLs.",
                  "ref_audio")  # fmt: skip
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad("`ref_audio` is not valid base64.", "ref_audio") from None

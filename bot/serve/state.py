"""`ServeConfig` (every bound of `narrator serve` in one place) and `ServerState`, what the handlers share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from bot.serve.metrics import Metrics


@dataclass(frozen=True)
class ServeConfig:
    data_dir: Path = Path("data")  # uploaded voices live in <data_dir>/voices
    api_keys: tuple[str, ...] = ()  # empty: no authentication
    max_input_chars: int = 4000
    max_streams: int = 8  # responses being rendered at once; the next one gets 503 + Retry-After
    max_body_bytes: int = 16 * 1024 * 1024  # JSON bodies (with a base64 ref_audio) and voice uploads
    max_voice_bytes: int = 10 * 1024 * 1024  # one audio_sample, as vLLM-Omni
    max_voices: int = 1000
    max_new_tokens: int = 2048  # code frames per request at most (about 164 s at 12.5 Hz)

    def __post_init__(self) -> None:
        checks = {"max_input_chars": self.max_input_chars, "max_streams": self.max_streams,
                  "max_body_bytes": self.max_body_bytes, "max_voice_bytes": self.max_voice_bytes,
                  "max_voices": self.max_voices, "max_new_tokens": self.max_new_tokens}  # fmt: skip
        for name, value in checks.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if any(not key.strip() for key in self.api_keys):
            raise ValueError("an API key must not be empty")


@dataclass
class ServerState:
    config: ServeConfig
    renderer: object  # bot.serve.render.Renderer
    voices: object  # bot.serve.voices.VoiceStore
    metrics: Metrics
    formats: tuple[str, ...]
    streams: int = 0
    started_at: float = field(default=0.0)


STATE = web.AppKey("state", ServerState)

"""A conformance fake of a vLLM-Omni Qwen3-TTS server, built from its published API (docs/serving/speech_api.md):
`GET /v1/models`, `GET /v1/audio/voices`, `POST /v1/audio/speech` with only the documented fields (anything else is
a 400, so the bot cannot lean on our own extensions), raw PCM s16le 24 kHz with `stream_format: "audio"`. Audio is
a tone whose pitch comes from the voice, so a test can tell who spoke. It stands in for a server we do not ship."""

from __future__ import annotations

import zlib

import numpy as np
from aiohttp import web

MODEL = "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice"
VOICES = ("vivian", "serena", "ryan", "aiden")
DOCUMENTED = {
    "model", "input", "voice", "response_format", "speed", "instructions", "task_type", "language",
    "max_new_tokens", "initial_codec_chunk_frames", "non_streaming_mode", "ref_audio", "ref_text",
    "x_vector_only_mode", "stream", "stream_format",
}  # fmt: skip
RATE = 24_000
REQUESTS = web.AppKey("requests", list)  # every speech body received, for the tests to read


def build_fake() -> web.Application:
    app = web.Application()
    app[REQUESTS] = []
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/v1/audio/voices", _voices)
    app.router.add_post("/v1/audio/speech", _speech)
    return app


async def _models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "vllm-omni"}]})


async def _voices(request: web.Request) -> web.Response:
    return web.json_response({"voices": list(VOICES)})


def _error(message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}},
                             status=400)  # fmt: skip


async def _speech(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    request.app[REQUESTS].append(body)
    unknown = set(body) - DOCUMENTED
    if unknown:
        return _error(f"unknown fields {sorted(unknown)}")
    if body.get("voice") not in VOICES:
        return _error(f"unknown voice {body.get('voice')!r}")
    if body.get("stream_format") == "audio" and body.get("response_format") not in ("pcm", "wav"):
        return _error("streaming requires pcm or wav")
    seconds = min(len(body["input"]) / 15.0, (body.get("max_new_tokens") or 2048) / 12.5)
    hz = 150.0 + zlib.crc32(body["voice"].encode()) % 300
    t = np.arange(int(seconds * RATE)) / RATE
    pcm = (0.3 * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2").tobytes()
    response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for start in range(0, len(pcm), 9601):  # odd sizes: samples split across chunks
        await response.write(pcm[start : start + 9601])
    await response.write_eof()
    return response

"""The small routes: `/v1/audio/voices` (vLLM-Omni's shape), `/v1/models`, `/health`, `/metrics`."""

from __future__ import annotations

import io
import time

import numpy as np
from aiohttp import web

from bot.serve.errors import ApiError, bad
from bot.serve.metrics import CONTENT_TYPE
from bot.serve.state import STATE, ServerState


def _state(request: web.Request) -> ServerState:
    return request.app[STATE]


async def list_voices(request: web.Request) -> web.Response:
    state = _state(request)
    presets = state.renderer.presets()
    return web.json_response({"voices": [*presets, *state.voices.names()], "uploaded_voices": state.voices.listing()})


async def upload_voice(request: web.Request) -> web.Response:
    state = _state(request)
    if not request.content_type.startswith("multipart/"):
        raise bad("Upload a voice as multipart/form-data with audio_sample, name and consent.", code="bad_content_type")
    fields, sample = await _read_form(request, state.config.max_voice_bytes)
    name, consent = fields.get("name", "").strip(), fields.get("consent", "").strip()
    if not name:
        raise bad("`name` is required: the name to speak this voice by.", "name", "missing_name")
    if not consent:
        raise bad("`consent` is required: a record that the speaker agreed to have their voice cloned.", "consent",
                  "missing_consent")  # fmt: skip
    if sample is None:
        raise bad("`audio_sample` is required: a WAV, FLAC or Ogg clip of the voice.", "audio_sample",
                  "missing_audio_sample")  # fmt: skip
    state.voices.check_new(name, set(state.renderer.presets()))
    clip = await state.renderer.references.decode(sample, "audio_sample")
    audio, rate = clip.audio, clip.sample_rate
    vector = await state.renderer.compute(state.renderer.engine.xvector, audio, rate)
    if vector is None:
        raise bad("Uploading a voice needs a Base checkpoint's speaker encoder; start the server with --base-model.",
                  "audio_sample", "no_speaker_encoder")  # fmt: skip
    voice = state.voices.add(name, consent, fields.get("ref_text") or None, fields.get("speaker_description") or None,
                             _wav(audio, rate), np.asarray(vector, np.float32))  # fmt: skip
    return web.json_response({"success": True, "voice": voice.public()}, status=201)


async def _read_form(request: web.Request, max_sample: int) -> tuple[dict[str, str], bytes | None]:
    fields: dict[str, str] = {}
    sample = None
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if part.name == "audio_sample":
            data = bytearray()
            while chunk := await part.read_chunk(64 * 1024):
                data += chunk
                if len(data) > max_sample:
                    raise ApiError(413, f"`audio_sample` is larger than the {max_sample} bytes this server accepts.",
                                   param="audio_sample", code="audio_too_large")  # fmt: skip
            sample = bytes(data)
        elif part.name in ("name", "consent", "ref_text", "speaker_description"):
            value = await part.text()
            if len(value) > 4000:
                raise bad(f"`{part.name}` is longer than 4000 characters.", part.name)
            fields[part.name] = value
    return fields, sample


def _wav(audio: np.ndarray, rate: int) -> bytes:
    import soundfile as sf

    out = io.BytesIO()
    sf.write(out, audio, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


async def delete_voice(request: web.Request) -> web.Response:
    voice = _state(request).voices.delete(request.match_info["name"])
    return web.json_response({"success": True, "name": voice.name})


async def models(request: web.Request) -> web.Response:
    state = _state(request)
    created = int(state.started_at)
    data = [
        {"id": m, "object": "model", "created": created, "owned_by": "narrator"} for m in state.renderer.model_ids()
    ]
    return web.json_response({"object": "list", "data": data})


async def health(request: web.Request) -> web.Response:
    state = _state(request)
    busy = state.streams >= state.config.max_streams
    return web.json_response({"status": "busy" if busy else "ok", "streams": state.streams,
                              "max_streams": state.config.max_streams,
                              "uptime_s": round(time.time() - state.started_at, 1)})  # fmt: skip


async def metrics(request: web.Request) -> web.Response:
    body = _state(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

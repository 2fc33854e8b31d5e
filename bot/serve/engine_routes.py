"""`/v1/narrator/*`: the rest of the `Engine` protocol over HTTP, for the bot's RemoteEngine (not part of any
OpenAI API). Audio travels as float32 little-endian bodies, vectors as JSON lists, so nothing is rounded."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
from aiohttp import web

from bot.serve.errors import bad
from bot.serve.speech import read_json
from bot.serve.state import STATE, ServerState

MAX_XVECTOR_SECONDS = 120


def _state(request: web.Request) -> ServerState:
    return request.app[STATE]


async def info(request: web.Request) -> web.Response:
    renderer = _state(request).renderer
    engine = renderer.engine
    audio = engine.audio
    return web.json_response({
        "kind": "narrator",
        "audio": {"sample_rate": audio.sample_rate, "samples_per_frame": audio.samples_per_frame,
                  "frame_rate": audio.frame_rate},
        "capabilities": {**asdict(engine.capabilities), "notes": list(engine.capabilities.notes)},
        "describe": engine.describe(),
        "custom_voice_model": engine.custom_voice_model,
        "checkpoint": asdict(renderer.info),
    })  # fmt: skip


async def checkpoint(request: web.Request) -> web.Response:
    body = await read_json(request)
    model = body.get("model") if isinstance(body, dict) else None
    renderer = _state(request).renderer
    if model is not None and model not in renderer.model_ids():
        raise bad(f"The checkpoint {model!r} is not served here.", "model", "model_not_found")
    return web.json_response(asdict(await renderer.compute(renderer.engine.checkpoint, model)))


async def speaker_row(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("speaker"), str):
        raise bad('Send {"model": ..., "speaker": ...}.', "speaker")
    renderer = _state(request).renderer
    model = body.get("model") or renderer.model
    if model not in renderer.model_ids():
        raise bad(f"The checkpoint {model!r} is not served here.", "model", "model_not_found")
    row = await renderer.compute(renderer.engine.speaker_row, model, body["speaker"])
    return web.json_response({"vector": [float(x) for x in np.asarray(row).reshape(-1)]})


async def xvector(request: web.Request) -> web.Response:
    try:
        rate = int(request.query.get("sample_rate", ""))
    except ValueError:
        raise bad("Give `sample_rate` in the query string.", "sample_rate") from None
    if not 8000 <= rate <= 48000:
        raise bad("`sample_rate` must be from 8000 to 48000 Hz.", "sample_rate")
    raw = await request.read()
    if len(raw) % 4 or len(raw) > 4 * rate * MAX_XVECTOR_SECONDS:
        raise bad(f"The body must be float32 samples, at most {MAX_XVECTOR_SECONDS} s.", code="bad_audio")
    audio = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    renderer = _state(request).renderer
    vector = await renderer.compute(renderer.engine.xvector, audio, rate)
    return web.json_response({"vector": None if vector is None else [float(x) for x in np.asarray(vector).ravel()]})


async def design(request: web.Request) -> web.Response:
    body = await read_json(request)
    state = _state(request)
    try:
        args = (
            str(body["description"]),
            str(body["text"]),
            str(body.get("language", "auto")),
            int(body.get("seed", 0)),
            min(int(body.get("max_frames", 0)), state.config.max_new_tokens),
        )
    except (KeyError, TypeError, ValueError):
        raise bad('Send {"description", "text", "language", "seed", "max_frames"}.') from None
    if not state.renderer.engine.capabilities.voice_design:
        raise bad("This server has no VoiceDesign checkpoint; start it with --design-model.", code="no_design_model")
    clip = await state.renderer.compute(state.renderer.engine.design_clip, *args)
    return web.Response(body=np.ascontiguousarray(clip, "<f4").tobytes(), content_type="application/octet-stream")

"""`POST /v1/audio/speech`: check, admit (503 with Retry-After when every stream slot is busy), render, send.

The response starts only once the first audio exists, so an error before any audio is a proper JSON error. After
that: raw bodies (pcm, pcm_f32, streamed wav) are cut off (the client sees an incomplete body, never a clean end),
SSE bodies get a `speech.audio.error` event. pcm and pcm_f32 always stream chunk by chunk; wav streams when
`stream`/`stream_format` ask for it (its header then has unknown sizes), else it is one exact file like flac, opus
and mp3.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import numpy as np
from aiohttp import web

from bot.serve import audio as wire
from bot.serve.errors import ERROR, ApiError, bad
from bot.serve.render import Job, Renderer
from bot.serve.schemas import parse_speech
from bot.serve.state import STATE, ServerState

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2


async def read_json(request: web.Request) -> object:
    if request.content_type != "application/json":
        raise bad("Send the request body as JSON (Content-Type: application/json).", code="bad_content_type")
    raw = await request.read()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise bad("The request body is not valid JSON.", code="bad_json") from None


@contextlib.contextmanager
def admitted(state: ServerState):
    if state.streams >= state.config.max_streams:
        raise ApiError(503, f"All {state.config.max_streams} stream slots of this server are busy; retry in a moment.",
                       kind="server_overloaded", code="server_busy",
                       headers={"Retry-After": str(RETRY_AFTER_S)})  # fmt: skip
    state.streams += 1
    state.metrics.active_streams.inc()
    try:
        yield
    finally:
        state.streams -= 1
        state.metrics.active_streams.dec()


async def speech(request: web.Request) -> web.StreamResponse:
    state: ServerState = request.app[STATE]
    params = parse_speech(await read_json(request), max_input_chars=state.config.max_input_chars,
                          max_new_tokens=state.config.max_new_tokens, formats=state.formats)  # fmt: skip
    renderer: Renderer = state.renderer
    with admitted(state):
        job = await renderer.job(params)
        return await _send(request, state, job, params.response_format, params.stream)


async def _send(request: web.Request, state: ServerState, job: Job, fmt: str, stream: str | None):
    started = time.perf_counter()
    gone = {"flag": False}

    def stop() -> bool:
        transport = request.transport
        return gone["flag"] or transport is None or transport.is_closing()

    rate = state.renderer.engine.audio.sample_rate
    chunks = state.renderer.chunks(job, stop).__aiter__()
    state.metrics.queue_depth.inc()
    try:
        first = await anext(chunks, None)
    finally:
        state.metrics.queue_depth.dec()
    if first is None:
        raise ApiError(500, "The engine produced no audio for this request.", kind="server_error", code="no_audio")
    state.metrics.first_audio.observe(time.perf_counter() - started)
    samples = 0
    response: web.StreamResponse | None = None
    try:
        if stream is None and fmt not in ("pcm", "pcm_f32"):
            parts = [first] + [c async for c in chunks]
            samples = sum(len(p) for p in parts)
            encode = (wire.encode_file, np.concatenate(parts), rate, fmt)  # off the loop: MP3/Opus take a while
            body = await asyncio.get_running_loop().run_in_executor(None, *encode)
            return web.Response(body=body, content_type=wire.CONTENT_TYPES[fmt], headers=_headers(rate))
        response = _streaming(fmt, stream, rate)
        await response.prepare(request)
        if stream != "sse" and fmt == "wav":
            await response.write(wire.wav_stream_header(rate))
        chunk = first
        while chunk is not None:
            samples += len(chunk)
            await _write(response, chunk, fmt, stream)
            chunk = await anext(chunks, None)
        if stream == "sse":
            await response.write(_done_event(job, samples, state))
        await response.write_eof()
        return response
    except ConnectionError:  # the client left: stop rendering; aiohttp ignores a closed transport at the end
        gone["flag"] = True
        request[ERROR] = "client_gone"
        if response is None:
            raise
        return response
    except ApiError as exc:
        gone["flag"] = True
        if response is None or not response.prepared:
            raise
        await _fail_midstream(request, response, exc, stream)
        return response
    finally:
        gone["flag"] = True
        _account(state, started, samples, rate)


def _streaming(fmt: str, stream: str | None, rate: int) -> web.StreamResponse:
    content_type = "text/event-stream" if stream == "sse" else wire.CONTENT_TYPES[fmt]
    response = web.StreamResponse(headers={**_headers(rate), "Content-Type": content_type, "Cache-Control": "no-cache"})
    response.enable_chunked_encoding()
    return response


def _headers(rate: int) -> dict[str, str]:
    return {"X-Narrator-Sample-Rate": str(rate)}


async def _write(response: web.StreamResponse, chunk: np.ndarray, fmt: str, stream: str | None) -> None:
    data = wire.encode_chunk(chunk, fmt)
    await response.write(wire.sse_delta(data) if stream == "sse" else data)


def _done_event(job: Job, samples: int, state: ServerState) -> bytes:
    frames = int(round(samples / state.renderer.engine.audio.samples_per_frame))
    usage = {"input_tokens": job.text_chars, "output_tokens": frames, "total_tokens": job.text_chars + frames}
    return wire.sse_event({"type": "speech.audio.done", "usage": usage})


async def _fail_midstream(request: web.Request, response: web.StreamResponse, exc: ApiError, stream: str | None,
                          ) -> None:  # fmt: skip
    """SSE: a `speech.audio.error` event ends the body; raw audio: the connection is cut before its last chunk."""
    log.warning("%s failed after audio was sent: %s", request.path, exc.message)
    request[ERROR] = exc.code or exc.kind
    if stream == "sse":
        with contextlib.suppress(ConnectionError):
            await response.write(wire.sse_event({"type": "speech.audio.error", "error": exc.body()["error"]}))
            await response.write_eof()
            return
    if request.transport is not None:
        request.transport.close()  # no terminating chunk: the client sees an incomplete body


def _account(state: ServerState, started: float, samples: int, rate: int) -> None:
    if samples:
        seconds = samples / rate
        state.metrics.audio_seconds.inc(seconds)
        state.metrics.real_time_factor.observe((time.perf_counter() - started) / seconds)

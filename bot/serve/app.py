"""`build_app(engine, config)`: the aiohttp application of `narrator serve`; `running(app, host, port)` serves it.

Middlewares, outermost first: metrics (every request counted by route and status), errors (OpenAI-style JSON for
anything refused), auth (optional bearer keys; /health and /metrics stay open for probes and scrapers). The body
size limit is aiohttp's `client_max_size`. The engine is started (checkpoints loaded and warmed) before the port
opens, and closed after it shuts.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from bot.engine.protocol import Engine
from bot.serve import engine_routes, routes, speech
from bot.serve.audio import supported_formats
from bot.serve.errors import AUTH, ERROR, ApiError, error_middleware
from bot.serve.metrics import Metrics
from bot.serve.render import Renderer
from bot.serve.state import STATE, ServeConfig, ServerState
from bot.serve.voices import VoiceStore

log = logging.getLogger(__name__)

OPEN_PATHS = ("/health", "/metrics")


def build_app(engine: Engine, config: ServeConfig) -> web.Application:
    metrics = Metrics()
    voices = VoiceStore(config.data_dir / "voices", config.max_voices)
    renderer = Renderer(engine, voices, metrics, max_streams=config.max_streams, max_new_tokens=config.max_new_tokens)
    app = web.Application(client_max_size=config.max_body_bytes,
                          middlewares=[_metrics_middleware, error_middleware, _auth_middleware])  # fmt: skip
    app[STATE] = ServerState(config, renderer, voices, metrics, supported_formats(), started_at=time.time())
    _routes(app)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return app


def _routes(app: web.Application) -> None:
    app.router.add_post("/v1/audio/speech", speech.speech)
    app.router.add_get("/v1/audio/voices", routes.list_voices)
    app.router.add_post("/v1/audio/voices", routes.upload_voice)
    app.router.add_delete("/v1/audio/voices/{name}", routes.delete_voice)
    app.router.add_get("/v1/models", routes.models)
    app.router.add_get("/health", routes.health)
    app.router.add_get("/metrics", routes.metrics)
    app.router.add_get("/v1/narrator/info", engine_routes.info)
    app.router.add_post("/v1/narrator/checkpoint", engine_routes.checkpoint)
    app.router.add_post("/v1/narrator/speaker_row", engine_routes.speaker_row)
    app.router.add_post("/v1/narrator/xvector", engine_routes.xvector)
    app.router.add_post("/v1/narrator/design", engine_routes.design)


async def _start(app: web.Application) -> None:
    state: ServerState = app[STATE]
    await state.renderer.start()
    log.info("serving %s (formats: %s; %d stream slots)", ", ".join(state.renderer.model_ids()),
             ", ".join(state.formats), state.config.max_streams)  # fmt: skip


async def _stop(app: web.Application) -> None:
    state: ServerState = app[STATE]
    state.renderer.closing.set()
    state.renderer.close()
    state.renderer.engine.close()


@web.middleware
async def _auth_middleware(request: web.Request, handler) -> web.StreamResponse:
    keys = request.app[STATE].config.api_keys
    if keys and request.path not in OPEN_PATHS:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if not any(hmac.compare_digest(token, key) for key in keys):
            raise ApiError(401, "A valid API key is required: send `Authorization: Bearer <key>`.", kind=AUTH,
                           code="invalid_api_key")  # fmt: skip
    return await handler(request)


@web.middleware
async def _metrics_middleware(request: web.Request, handler) -> web.StreamResponse:
    metrics: Metrics = request.app[STATE].metrics
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except (ConnectionResetError, ConnectionError):
        status = 499  # the client left, or the stream was cut after a failure
        raise
    finally:
        metrics.requests.labels(route, str(status)).inc()
        error = request.get(ERROR)
        if error is not None:
            metrics.errors.labels(error).inc()


@contextlib.asynccontextmanager
async def running(
    app: web.Application, host: str = "127.0.0.1", port: int = 0, *, shutdown_timeout: float = 60.0
) -> AsyncIterator[str]:
    """Serve `app` on host:port (0: any free port) and yield its base URL; on exit, responses still streaming get
    `shutdown_timeout` seconds to finish before they are cut (0: cut at once, like a server that dies)."""
    # aiohttp reads a timeout of 0 as "no limit": the smallest positive one cuts at once instead
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=max(shutdown_timeout, 0.001))
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # the port actually bound (port 0 picks one)
    try:
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()

"""`narrator serve` apps for tests: a real server (our engine over tiny checkpoints) on 127.0.0.1 in its own thread
and event loop, so blocking clients (the openai package, httpx, the RemoteEngine) can call it from the test."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from bot.engine.local import LocalEngine
from bot.engine.options import EngineOptions
from bot.serve.app import build_app, running
from bot.serve.state import ServeConfig


def tiny_engine(custom_voice: Path, base: Path | None = None, design: Path | None = None, **options) -> LocalEngine:
    return LocalEngine(EngineOptions(str(custom_voice), base_model=None if base is None else str(base),
                                     design_model=None if design is None else str(design), device="cpu",
                                     dtype="float32", speed_path=False, warm_up=False, **options))  # fmt: skip


class ServerThread:
    """Serves `build_app(engine, config)` on a free port; `url` once started; `kill()` stops it at once."""

    def __init__(self, engine, config: ServeConfig, port: int = 0) -> None:
        self.engine, self.config, self.port = engine, config, port
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="serve-under-test", daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(120)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc) -> None:
        self.kill()

    def kill(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            # shutdown_timeout 0: `kill` cuts responses mid-stream, as a server process that dies does
            async with running(build_app(self.engine, self.config), "127.0.0.1", self.port, shutdown_timeout=0) as url:
                self.url = url
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self._error = exc
            self._ready.set()


@contextlib.contextmanager
def serving(engine, tmp_path: Path, **config) -> Iterator[ServerThread]:
    with ServerThread(engine, ServeConfig(data_dir=tmp_path, **config)) as server:
        yield server

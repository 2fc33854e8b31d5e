"""The composition root: `open_bot`, the one way to build a ready-to-start bot (used by the e2e tests too).

Contract of `open_bot` (keep it stable; tests/e2e rely on it):

    async with open_bot(settings, **client_options) as bot:   # bot: NarratorBot, not yet logged in
        await bot.start(token)                                 # or bot.login + bot.connect

- On enter: opens the database at `settings.database_url` (creating the folder, applying the Alembic migrations,
  WAL mode), marks renders left unfinished by a previous process as `interrupted` (their owners are told once the
  bot is ready), and builds the services and the `NarratorBot`. No model is loaded: each worker loads the
  checkpoints named by `settings.custom_voice_model`, `voice_design_model` and `base_model` on `settings.device`
  the first time a job needs them.
- `client_options` go to `discord.ext.commands.Bot` (e.g. `connector=aiohttp.TCPConnector(ssl=False)`,
  `guild_ready_timeout=0.05`); `sync_commands=False` skips the dev-guild sync.
- On exit: cancels every job, stops the workers, leaves voice, closes the Discord session and the database.
  A render still running then stays `running` in the database; the next `open_bot` marks it `interrupted` and,
  once ready, posts a notice mentioning its owner in the text channel the /say came from.

What tests can rely on: a master's JSON sidecar names each identity by `voice-<voices.id>` for stored voices (a
preset default narrator gets a random id); `bot.services.queue` / `.workers` / `.voices` / `.renders` are the
services; `bot.services.playback.source(guild_id)` is the guild's live `PCMStreamSource` (None before the first
audio). `tests/test_bot_discord.py` shows the whole contract in use against a small fake Discord.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from bot.client import NarratorBot
from bot.jobs.queue import JobQueue
from bot.jobs.worker import InferenceWorker
from bot.services.creation import IdentityService
from bot.services.guild_config import GuildConfig
from bot.services.library import VoiceService
from bot.services.say import RenderService
from bot.settings import Settings
from db import repo
from db.engine import Database, open_database

if TYPE_CHECKING:
    import discord

    from bot.voice.connections import Playback

log = logging.getLogger(__name__)


def worker_devices(device: str) -> list[str]:
    """One inference worker per GPU: `auto` means every visible CUDA device (or the CPU when there is none)."""
    if device != "auto":
        return [device]
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(count)] or ["cpu"]


def reserve_a_core_for_voice() -> None:
    """On CPU inference, leave one core to the event loop and the voice player thread: a starved player sends its
    20 ms packets late and then in bursts."""
    import os

    import torch

    cores = os.cpu_count() or 1
    if cores > 1 and torch.get_num_threads() > cores - 1:
        torch.set_num_threads(cores - 1)
        log.info("CPU inference: torch uses %d of %d cores, one is kept for voice", cores - 1, cores)


class Services:
    playback: Playback

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.queue = JobQueue(settings.max_queued_per_user)
        self.workers = [
            InferenceWorker(self.queue, device=d, job_timeout_s=settings.job_timeout_s, name=f"w{i}")
            for i, d in enumerate(worker_devices(settings.device))
        ]
        self.voices = VoiceService(db, settings)
        self.guild_config = GuildConfig(db, settings)
        self.identities = IdentityService(self)
        self.renders = RenderService(self)

    def attach(self, client: discord.Client) -> None:
        from bot.voice.connections import Playback

        self.playback = Playback(client)

    def start_workers(self) -> None:
        # The model's Python frame loop holds the GIL between torch calls; hand it over every 1 ms (default 5 ms)
        # so the voice player thread sends each 20 ms packet on time.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        if any(w.device == "cpu" for w in self.workers):
            reserve_a_core_for_voice()
        for worker in self.workers:
            worker.start()
        log.info("%d inference worker(s): %s", len(self.workers), ", ".join(w.device for w in self.workers))

    async def shutdown(self) -> None:
        """Cancel every job, stop the workers (waiting for their compute threads), leave voice."""
        self.renders.closing = True
        self.queue.cancel_where(lambda job: True)
        for worker in self.workers:
            await worker.close()
        await self.renders.drain(timeout=2.0)
        if hasattr(self, "playback"):
            await self.playback.leave_all()


@contextlib.asynccontextmanager
async def open_bot(settings: Settings, **client_options: Any) -> AsyncIterator[NarratorBot]:
    db = await open_database(settings.database_url)
    try:
        async with db.sessions.begin() as session:
            interrupted = await repo.mark_unfinished_interrupted(session)
        if interrupted:
            log.warning("%d render(s) were interrupted by the last shutdown; their owners will be told", interrupted)
        settings.outputs_dir.mkdir(parents=True, exist_ok=True)
        services = Services(settings, db)
        bot = NarratorBot(services, **client_options)
        try:
            yield bot
        finally:
            if not bot.is_closed():
                await bot.close()
            else:
                await services.shutdown()
    finally:
        await db.close()

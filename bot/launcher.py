"""`narrator run`, and `open_bot`, the one way to build a ready-to-start bot (used by the e2e tests too).

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

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

from bot.bot import NarratorBot
from bot.services import Services
from bot.settings import Settings
from db import repo
from db.engine import open_database

log = logging.getLogger(__name__)


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


async def _run(settings: Settings, token: str, sync_commands: bool) -> None:
    async with open_bot(settings, sync_commands=sync_commands) as bot:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # not on Windows; Ctrl+C still raises there
                loop.add_signal_handler(signum, stop.set)
        runner = asyncio.create_task(bot.start(token))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            log.info("Signal received, shutting down cleanly")
            await bot.close()
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner  # re-raises a login failure


def main(args: argparse.Namespace, settings: Settings) -> int:
    import aiohttp
    import discord

    from bot.opus import OpusNotFound, ensure_opus

    token = settings.require_token()  # SettingsError -> one-line message from bot.cli
    try:
        ensure_opus()
    except OpusNotFound as exc:
        sys.stderr.write(f"narrator: {exc}\n")
        return 2
    log.info("Settings: %s", settings.describe())
    try:
        asyncio.run(_run(settings, token, sync_commands=not getattr(args, "no_sync", False)))
    except discord.LoginFailure:
        sys.stderr.write(
            "narrator: Discord rejected DISCORD_TOKEN; copy the bot token again from the developer portal.\n"
        )
        return 2
    except (aiohttp.ClientConnectionError, OSError) as exc:
        sys.stderr.write(f"narrator: cannot reach Discord ({exc}); check the network and try again.\n")
        return 1
    return 0

"""`narrator run`: checks, then the bot until a signal or a fatal error (built by `bot.app.open_bot`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from bot.app import open_bot
from bot.settings import Settings

log = logging.getLogger(__name__)

TOKEN_HINT = (
    "get a new one in the Developer Portal → Applications → your app → Bot → Reset Token "
    "(https://discord.com/developers/applications) and put it in .env as DISCORD_TOKEN=..."
)


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

    from bot.voice.opus import OpusNotFound, ensure_opus

    token = settings.require_token()  # SettingsError -> one-line message from bot.cli
    try:
        ensure_opus()
    except OpusNotFound as exc:
        sys.stderr.write(f"narrator: {exc}\n")
        return 2
    log.info("Settings: %s", settings.describe())
    from bot.engine.local import resolve_device

    resolve_device(settings.device)  # EngineError (one line from bot.cli) before the database, models or Discord
    # open_bot then loads every checkpoint before logging in: a broken model stops here too (EngineError)
    try:
        asyncio.run(_run(settings, token, sync_commands=not getattr(args, "no_sync", False)))
    except discord.LoginFailure:
        sys.stderr.write(f"narrator: Discord rejected DISCORD_TOKEN; {TOKEN_HINT}\n")
        return 2
    except (aiohttp.ClientConnectionError, OSError) as exc:
        sys.stderr.write(f"narrator: cannot reach Discord ({exc}); check the network and try again.\n")
        return 1
    return 0

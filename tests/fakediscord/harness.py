"""Pointing an unmodified discord.py at the fake (base URLs only), and waiting on the fake from async tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl

from tests.fakediscord.server import FakeDiscord


@contextlib.contextmanager
def discord_pointed_at(fake: FakeDiscord) -> Iterator[None]:
    """Set discord.py's process-global REST base and gateway URL to the fake; restore them on exit.

    The webhook/interaction adapter imports the same `Route`, so callbacks and followups follow. The voice websocket
    URL comes from VOICE_SERVER_UPDATE (wss:// is hard-coded), so the fake serves it over TLS instead of patching.
    """
    old_base, old_gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway


def client_options(fake: FakeDiscord) -> dict:
    """Options for `discord.Client`/`commands.Bot` (create inside the running loop): a connector that trusts only
    the fake's test certificate, and a short guild-ready wait."""
    connector = aiohttp.TCPConnector(ssl=fake.certificate.client_context())
    return {"connector": connector, "guild_ready_timeout": 0.05}


async def wait_until(predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll `predicate` every 20 ms until it is truthy; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.02)


async def start_client(client: discord.Client, timeout: float = 15.0) -> asyncio.Task:
    """Start `client` against the fake and wait until it is ready; re-raises what stopped it if it never got there
    (e.g. `discord.PrivilegedIntentsRequired` when the fake refuses an intent). Close it with `stop_client`."""
    task = asyncio.create_task(client.start("fake-token"))
    await wait_until(lambda: client.is_ready() or task.done(), timeout, "the client to be ready")
    if task.done():
        task.result()
    return task


async def stop_client(client: discord.Client, task: asyncio.Task) -> None:
    await client.close()
    await asyncio.wait_for(task, 10)

"""Pytest fixtures for the fake Discord (import them into a conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tests.fakediscord.harness import discord_pointed_at
from tests.fakediscord.server import FakeDiscord


@pytest_asyncio.fixture
async def fake_discord(tmp_path: Path) -> AsyncIterator[FakeDiscord]:
    """A started FakeDiscord (no guilds yet: call `add_guild` before the client connects), with discord.py's base
    URLs pointed at it for the test and restored afterwards."""
    from bot.voice.opus import ensure_opus

    ensure_opus()  # discord.py finds no libopus on its own on Linux without the system package
    fake = FakeDiscord(tmp_path / "fake-discord")
    await fake.start()
    try:
        with discord_pointed_at(fake):
            yield fake
    finally:
        await fake.stop()

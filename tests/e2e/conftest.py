"""The real narrator bot (unmodified discord.py, real worker, tiny checkpoints on CPU) against the fake Discord, in
one event loop. Only Discord is fake: REST, gateway and voice travel over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
import soundfile as sf

from bot.settings import Settings
from tests import db_backends
from tests.fakediscord.fixtures import fake_discord  # noqa: F401
from tests.fakediscord.harness import client_options, wait_until
from tests.fakediscord.server import FakeDiscord, SentInteraction
from tests.fakediscord.voice import Packet

log = logging.getLogger(__name__)

GUILD, GUILD2, GUILD3 = 3000, 4000, 5000
ADMIN, MEMBER = 2000, 2002  # GUILD's owner (all permissions) and a plain member; both in GUILD's voice channel
OTHER = 2001  # GUILD2's only member, in GUILD2's voice channel
THIRD = 2003  # GUILD3's only member, in GUILD3's voice channel
NO_PERMISSIONS = "0"


@pytest.fixture
def e2e_settings(tmp_path: Path, tiny_custom_voice, tiny_base, tiny_voice_design) -> Settings:
    """Tiny checkpoints on CPU; database, outputs and data in this test's tmp dir; commands synced to GUILD."""
    return Settings(
        custom_voice_model=str(tiny_custom_voice), base_model=str(tiny_base), voice_design_model=str(tiny_voice_design),
        device="cpu", dtype="float32", compile=False, data_dir=tmp_path / "data", outputs_dir=tmp_path / "outputs",
        log_dir=tmp_path / "logs", database_url=f"sqlite+aiosqlite:///{tmp_path / 'data' / 'narrator.db'}",
        dev_guild_id=GUILD, max_batch=3,  # three guilds render at once, as rows of one batch
    )  # fmt: skip


class Narrator:
    """Starts and stops the real bot against `fake` (`start` returns when the bot is ready; `stop` is clean)."""

    def __init__(self, fake: FakeDiscord, settings: Settings) -> None:
        self.fake, self.settings = fake, settings
        self.bot = None
        self._context = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        from bot.app import open_bot

        self._context = open_bot(self.settings, **client_options(self.fake))
        self.bot = await self._context.__aenter__()
        self._task = asyncio.create_task(self.bot.start("fake-token"), name="narrator under test")
        await wait_until(lambda: self.bot.is_ready() or self._task.done(), 30, "the bot to be ready")
        if self._task.done():
            self._task.result()  # a failed login: raise it here

    async def stop(self) -> None:
        if self._context is None:
            return
        context, task, self._context = self._context, self._task, None
        await context.__aexit__(None, None, None)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)

    # -- what tests do as users ----------------------------------------------------------------------------------------
    async def say(self, script: str, *, guild: int = GUILD, user: int = ADMIN, voice: str | None = None):
        options = [{"name": "script", "type": 3, "value": script}]
        if voice is not None:
            options.append({"name": "voice", "type": 3, "value": voice})
        return await self.fake.command(guild, user, "say", options)

    def render_statuses(self) -> list[tuple[int, str]]:
        """(user id, status) of every render row, read with plain sqlite3 (not the bot's engine)."""
        path = self.settings.database_url.split("///", 1)[1]
        with contextlib.closing(sqlite3.connect(path)) as db:
            return [(int(u), s) for u, s in db.execute("SELECT user_id, status FROM renders ORDER BY id")]


@pytest_asyncio.fixture
async def narrator(fake_discord: FakeDiscord, e2e_settings: Settings) -> AsyncIterator[Narrator]:  # noqa: F811
    async for runner in running(fake_discord, e2e_settings):
        yield runner


@pytest.fixture
def postgres_settings(e2e_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """e2e_settings with the bot's database a fresh PostgreSQL database, dropped afterwards (tests that use it are
    marked `db_backends.needs_postgres`)."""
    for url in db_backends.fresh_url("postgresql", tmp_path):
        yield dataclasses.replace(e2e_settings, database_url=url)


@pytest_asyncio.fixture
async def pg_narrator(fake_discord: FakeDiscord, postgres_settings: Settings) -> AsyncIterator[Narrator]:  # noqa: F811
    """The real bot with its database on PostgreSQL (stopped before the database is dropped)."""
    async for runner in running(fake_discord, postgres_settings):
        yield runner


async def running(fake: FakeDiscord, settings: Settings) -> AsyncIterator[Narrator]:
    """The bot started against `fake` with GUILD (ADMIN, MEMBER), GUILD2 (OTHER) and GUILD3 (THIRD); stopped when
    resumed."""
    fake.add_guild(GUILD, [ADMIN, MEMBER])
    fake.add_guild(GUILD2, [OTHER])
    fake.add_guild(GUILD3, [THIRD])
    runner = Narrator(fake, settings)
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


# -- reading results ---------------------------------------------------------------------------------------------------
async def wait_for_master(sent: SentInteraction, timeout: float = 90.0) -> tuple[np.ndarray, int, str]:
    """Wait for the followup carrying the master; returns (float32 mono audio, sample rate, filename)."""
    await wait_until(lambda: sent.uploads, timeout, f"the master of interaction {sent.id}")
    name, data = next(iter(sent.uploads[0].files.values()))
    audio, rate = sf.read(io.BytesIO(data), dtype="float32")
    return audio, rate, name


def sidecar(settings: Settings, master_name: str) -> dict:
    """The JSON sidecar written next to the master in the outputs folder."""
    stem = Path(master_name).stem
    (path,) = settings.outputs_dir.rglob(f"{stem}.json")
    return json.loads(path.read_text(encoding="utf-8"))


async def wait_for_quiet(fake: FakeDiscord, guild: int, quiet_s: float = 0.6, timeout: float = 60.0) -> None:
    """Wait until `guild` has had no audible packet for `quiet_s` seconds (its stream went back to silence)."""
    import time

    def quiet() -> bool:
        loud = [p.at for p in fake.udp.guild_packets(guild) if p.audible]
        return bool(loud) and time.monotonic() - loud[-1] > quiet_s

    await wait_until(quiet, timeout, f"guild {guild}'s audio to finish")


def packets_since(fake: FakeDiscord, guild: int, since: float) -> list[Packet]:
    return fake.udp.guild_packets(guild, since)

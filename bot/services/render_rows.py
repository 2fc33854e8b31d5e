"""The render rows of /say: recorded before a render is queued, marked as it runs and ends, and reported after a
restart. The bookkeeping never decides what a user is told: a database error is logged, a final state is retried
in the background, and the user still gets their answer (`SayService`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

import discord
from sqlalchemy.exc import SQLAlchemyError

from bot.errors import DatabaseBusy
from db import repo

if TYPE_CHECKING:
    from db.engine import Database

log = logging.getLogger(__name__)

MARK_ATTEMPTS = 4  # a locked database is retried (each try waits out SQLite's busy timeout first)
MARK_RETRY_S = 2.0
# What a failing database raises: SQLAlchemy's errors, and the OSError asyncpg gives when the server is unreachable.
DATABASE_ERRORS = (SQLAlchemyError, OSError)
NOT_RETRIED = ("queued", "running")  # only a final state is retried: a late "running" must not overwrite one


def database_busy(doing: str) -> str:
    return f"I could not {doing} this render: the database is busy or unavailable; try again in a moment."


@contextlib.contextmanager
def told_if_database_fails(doing: str) -> Iterator[None]:
    """A database error inside becomes DatabaseBusy (one clear sentence for the user instead of the generic
    apology), logged here with its exception since the command's error handler logs refusals without one."""
    try:
        yield
    except DATABASE_ERRORS as exc:
        log.error("could not %s a /say render: database error", doing, exc_info=exc)
        raise DatabaseBusy(database_busy(doing)) from exc


class RenderRows:
    """Reads and writes the `renders` table for /say. `spawn` runs a background retry where the caller can wait
    for it (SayService.drain)."""

    def __init__(self, db: Database, spawn: Callable[[Coroutine[Any, Any, Any]], None]) -> None:
        self.db = db
        self._spawn = spawn

    async def record(self, guild_id: int, channel_id: int, user_id: int, script: str, voice_id: int | None) -> int:
        """Add a render's row (status queued) and return its id; DatabaseBusy if it cannot be written, and then
        there is no row."""
        with told_if_database_fails("record"):
            async with self.db.sessions.begin() as s:
                row = await repo.add_render(s, guild_id, channel_id, user_id, script, voice_id)
        return row.id

    async def mark(self, render_id: int | None, status: str, **values: Any) -> bool:
        """Record a render's state; a database error is logged and retried (a locked SQLite frees up), and never
        raised. False if it could not be recorded now (a final state is then retried in the background, so the row
        does not stay queued or running)."""
        if render_id is None:
            return True
        if await self._try_mark(render_id, status, values, attempts=1):
            return True
        if status not in NOT_RETRIED:
            self._spawn(self._try_mark(render_id, status, values, attempts=MARK_ATTEMPTS))
        return False

    async def _try_mark(self, render_id: int, status: str, values: dict[str, Any], *, attempts: int) -> bool:
        for attempt in range(1, attempts + 1):
            try:
                async with self.db.sessions.begin() as s:
                    await repo.mark_render(s, render_id, status, **values)
                return True
            except DATABASE_ERRORS as exc:
                log.error("could not record render #%s as %s (try %d of %d): %s", render_id, status, attempt,
                          attempts, exc)  # fmt: skip
                if attempt < attempts:
                    await asyncio.sleep(MARK_RETRY_S * attempt)
        return False

    # -- after a restart ---------------------------------------------------------------------------------------------

    async def report_interrupted(self, client: discord.Client) -> None:
        """Tell the owner of each render a restart interrupted. A database error is logged and never raised (this
        runs at start-up); whoever it leaves untold, or told but not marked so, is told at the next start."""
        try:
            async with self.db.sessions() as s:
                renders = await repo.unnotified_interrupted(s)
        except DATABASE_ERRORS as exc:
            log.error("could not read the renders interrupted by the last restart; their owners will be told at the "
                      "next start: %s", exc, exc_info=exc)  # fmt: skip
            return
        for render in renders:
            await _tell_interrupted(client, render)
            await self._mark_notified(render.id)

    async def _mark_notified(self, render_id: int) -> None:
        try:
            async with self.db.sessions.begin() as s:
                await repo.mark_notified(s, render_id)
        except DATABASE_ERRORS as exc:
            log.error("could not record that the owner of interrupted render #%s was told (they may be told again "
                      "at the next start): %s", render_id, exc, exc_info=exc)  # fmt: skip


async def mark_interrupted(db: Database) -> None:
    """Renders a previous process left queued or running become `interrupted`. A database error (another process
    holding a lock) is logged and start-up goes on: those rows are marked at the next start instead."""
    try:
        async with db.sessions.begin() as session:
            interrupted = await repo.mark_unfinished_interrupted(session)
    except DATABASE_ERRORS as exc:
        log.error("could not mark the renders left unfinished by the last run as interrupted (retried at the next "
                  "start): %s", exc, exc_info=exc)  # fmt: skip
        return
    if interrupted:
        log.warning("%d render(s) were interrupted by the last shutdown; their owners will be told", interrupted)


async def _tell_interrupted(client: discord.Client, render: repo.Render) -> None:
    text = (
        f"<@{render.user_id}> sorry, your render #{render.id} was interrupted because I restarted. "
        "I am back: run /say again to get it."
    )
    try:
        channel = client.get_channel(render.channel_id) or await client.fetch_channel(render.channel_id)
        await channel.send(text, allowed_mentions=discord.AllowedMentions(users=[discord.Object(render.user_id)]))
    except discord.HTTPException as exc:
        log.warning("could not tell user %s about interrupted render #%s: %s", render.user_id, render.id, exc)

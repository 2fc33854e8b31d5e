"""The async engine: SQLite through aiosqlite in WAL mode, foreign keys on, a busy timeout for the CLI beside the bot.

`Database` owns the engine and the session factory; `open_database(url)` creates the parent folder of a file database,
applies the migrations and returns it; `await db.close()` disposes of the engine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL, or None for memory databases and other backends."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _on_connect(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets `narrator db current` or a backup read while the bot writes; foreign keys make CASCADE real.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _on_connect)
    return engine


@dataclass
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    async def close(self) -> None:
        await self.engine.dispose()


async def open_database(url: str, *, migrate: bool = True) -> Database:
    """Open (and by default migrate to head) the database at `url`."""
    engine = create_engine(url)
    if migrate:
        from db.migrate import upgrade_async

        await upgrade_async(engine)
    log.info("Database ready: %s", make_url(url).render_as_string(hide_password=True))
    return Database(engine, async_sessionmaker(engine, expire_on_commit=False))

"""The async engine: SQLite (the embedded default, through aiosqlite, in WAL mode) or PostgreSQL (through asyncpg).

`Database` owns the engine and the session factory; `open_database(url)` creates the parent folder of a file database,
checks that it can be read, applies the migrations and returns it; `await db.close()` disposes of the engine. A
database that cannot be opened or read raises `DatabaseUnusable` with one line saying what to do, never a driver
traceback. URLs are written to logs only through `describe_url` (password masked).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from db.errors import DatabaseUnusable
from db.migrate import current_async, upgrade_async

log = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
# Plain driver names an operator may write, and the async driver each one means here.
ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}
# SQLite's words for a file it cannot use (sqlite3 gives them all as DatabaseError / OperationalError).
SQLITE_CORRUPT = ("file is not a database", "database disk image is malformed", "file is encrypted")
SQLITE_CANNOT_OPEN = ("unable to open database file", "attempt to write a readonly database", "disk i/o error")


def describe_url(url: str | URL) -> str:
    """The URL as it may appear in a log or a message: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<a DATABASE_URL that is not a valid URL>"


def async_url(url: str | URL) -> URL:
    """`url` parsed, with a plain `sqlite://` or `postgresql://` (or `postgres://`) given its async driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUnusable(
            "DATABASE_URL is not a valid database URL; write it like sqlite+aiosqlite:///data/narrator.db "
            "or postgresql+asyncpg://user:password@host/dbname"
        ) from None
    driver = ASYNC_DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


def sqlite_file(url: str | URL) -> Path | None:
    """The file of a SQLite URL, or None for memory databases and other backends."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _on_connect(dbapi_connection, _record) -> None:
    try:
        cursor = dbapi_connection.cursor()
        # WAL lets `narrator db current` or a backup read while the bot writes; foreign keys make CASCADE real.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()
    except Exception:
        # A file that is not a database fails here; the pool then drops the connection without closing it, which
        # would leave aiosqlite's thread running after the event loop has gone.
        dbapi_connection.close()
        raise


def create_engine(url: str | URL) -> AsyncEngine:
    parsed = async_url(url)
    path = sqlite_file(parsed)
    if path is not None:
        if path.is_dir():  # caught here: aiosqlite's failed connect would leave its thread to race the loop's end
            raise DatabaseUnusable(f"{path} is a folder, not a SQLite database file; point DATABASE_URL at a file")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnusable(
                f"cannot create the folder {path.parent} for the database ({exc.strerror or exc}); "
                "check NARRATOR_DATA_DIR or DATABASE_URL and the folder's permissions"
            ) from exc
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = create_async_engine(parsed)
            event.listen(engine.sync_engine, "connect", _on_connect)
        else:
            engine = create_async_engine(parsed, pool_pre_ping=True)  # a server may drop idle connections
    except ModuleNotFoundError as exc:
        raise DatabaseUnusable(
            f"{describe_url(parsed)} needs the Python package {exc.name!r}, which is not installed; "
            "reinstall with ./install.sh"
        ) from exc
    except (ArgumentError, InvalidRequestError) as exc:
        raise DatabaseUnusable(
            f"cannot use {describe_url(parsed)}: {_first_line(exc)}; "
            "use sqlite+aiosqlite:///PATH or postgresql+asyncpg://user:password@host/dbname"
        ) from exc
    return engine


def _first_line(exc: BaseException) -> str:
    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    return lines[0] if lines else type(inner).__name__


def unusable_error(url: str | URL, exc: BaseException, *, connecting: bool) -> DatabaseUnusable | None:
    """The `DatabaseUnusable` that `exc` means, or None when it is some other fault (a bug, a migration error).
    `connecting`: raised while opening the first connection, where any driver or network error means unusable."""
    if isinstance(exc, DatabaseUnusable):
        return exc
    parsed = async_url(url)
    reason = _first_line(exc)
    path = sqlite_file(parsed)
    if parsed.get_backend_name() == "sqlite" and isinstance(exc, DBAPIError):
        where = str(path) if path is not None else "the SQLite database"
        if any(words in reason.lower() for words in SQLITE_CORRUPT):
            return DatabaseUnusable(f"{where} is not a valid SQLite database; move it away or restore a backup")
        if any(words in reason.lower() for words in SQLITE_CANNOT_OPEN):
            return DatabaseUnusable(
                f"cannot open {where} ({reason}); check that it is a writable file in a writable folder"
            )
        return None
    if connecting and (isinstance(exc, (DBAPIError, OSError)) or _is_driver_error(exc)):
        return DatabaseUnusable(
            f"cannot connect to {describe_url(parsed)} ({reason}); check DATABASE_URL and that the server is running"
        )
    return None


def _is_driver_error(exc: BaseException) -> bool:
    """asyncpg raises some errors of `connect()` (a wrong password, a missing database) unwrapped by SQLAlchemy."""
    return (type(exc).__module__ or "").startswith("asyncpg")


async def probe(engine: AsyncEngine) -> None:
    """Open one connection and read the schema, so a foreign or corrupt file fails here, not in the first command."""
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            await connection.execute(text("SELECT count(*) FROM sqlite_master"))
        else:
            await connection.execute(text("SELECT 1"))


@dataclass
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    async def close(self) -> None:
        await self.engine.dispose()


async def open_database(url: str | URL, *, migrate: bool = True) -> Database:
    """Open (and by default migrate to head) the database at `url`; `DatabaseUnusable` if it cannot be used."""
    engine = create_engine(url)
    try:
        await run_checked(url, probe(engine), connecting=True)
        if migrate:
            await run_checked(url, upgrade_async(engine), connecting=False)
    except BaseException:
        await engine.dispose()
        raise
    log.info("Database ready: %s", describe_url(async_url(url)))
    return Database(engine, async_sessionmaker(engine, expire_on_commit=False))


async def run_checked(url: str | URL, work, *, connecting: bool):
    try:
        return await work
    except Exception as exc:
        problem = unusable_error(url, exc, connecting=connecting)
        if problem is None:
            raise
        raise problem from exc


# -- blocking entry points for the `narrator db` CLI ----------------------------------------------------------------


def upgrade(url: str) -> None:
    _on_fresh_engine(url, upgrade_async)


def current(url: str) -> str | None:
    return _on_fresh_engine(url, current_async)


def _on_fresh_engine(url: str, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Blocking: ``await work(engine)`` on a new engine for ``url``, disposed of afterwards."""

    async def go() -> T:
        engine = create_engine(url)
        try:
            await run_checked(url, probe(engine), connecting=True)
            return await run_checked(url, work(engine), connecting=False)
        finally:
            await engine.dispose()

    return asyncio.run(go())

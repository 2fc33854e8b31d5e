"""The database backends the db tests run on: SQLite always, PostgreSQL too when NARRATOR_TEST_POSTGRES_URL names a
server (`.ci/run` starts one; its user needs CREATEDB). Each test gets a fresh, empty database of its own.

Test modules declare their fixture as
    @pytest.fixture(params=db_backends.BACKENDS)
    def db_url(request, tmp_path): yield from db_backends.fresh_url(request.param, tmp_path)
A test that runs on PostgreSQL only (an e2e scenario) is marked `needs_postgres`; `rows` reads such a database
with asyncpg itself, not through the bot's engine.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, make_url

POSTGRES_ENV = "NARRATOR_TEST_POSTGRES_URL"
BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get(POSTGRES_ENV) else [])
needs_postgres = pytest.mark.skipif(
    not os.environ.get(POSTGRES_ENV), reason=f"{POSTGRES_ENV} is not set: no PostgreSQL server (.ci/run starts one)"
)


def fresh_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of a new empty database on `backend`; a PostgreSQL one is dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'sub' / 'n.db'}"
        return
    server = make_url(os.environ[POSTGRES_ENV])
    name = f"narrator_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def rows(url: str, query: str) -> list[tuple]:
    """The rows `query` returns from the PostgreSQL database at `url` (an asyncpg connection of its own)."""
    connection = await _connect(make_url(url))
    try:
        return [tuple(record) for record in await connection.fetch(query)]
    finally:
        await connection.close()


async def _admin(server: URL, statement: str) -> None:
    connection = await _connect(server)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _connect(server: URL):
    import asyncpg

    return await asyncpg.connect(
        host=server.host,
        port=server.port or 5432,
        user=server.username,
        password=server.password,
        database=server.database,
    )

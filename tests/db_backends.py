"""The database backends the db tests run on: SQLite always, PostgreSQL too when NARRATOR_TEST_POSTGRES_URL names a
server (`.ci/run` starts one; its user needs CREATEDB). Each test gets a fresh, empty database of its own.

Test modules declare their fixture as
    @pytest.fixture(params=db_backends.BACKENDS)
    def db_url(request, tmp_path): yield from db_backends.fresh_url(request.param, tmp_path)
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

POSTGRES_ENV = "NARRATOR_TEST_POSTGRES_URL"
BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get(POSTGRES_ENV) else [])


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


async def _admin(server, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(
        host=server.host,
        port=server.port or 5432,
        user=server.username,
        password=server.password,
        database=server.database,
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()

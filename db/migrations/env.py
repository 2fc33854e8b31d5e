"""Alembic environment for the narrator database (SQLAlchemy asyncio: aiosqlite, or asyncpg for PostgreSQL).

Called by `db.migrate`: the connection arrives in `config.attributes["connection"]` (a sync facade of an async
connection). Run through the `alembic` command line instead, it opens its own async engine from `sqlalchemy.url`.
"""

from __future__ import annotations

import asyncio

from alembic import context

from db.models import Base

config = context.config
target_metadata = Base.metadata


def run_with(connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things in place, so later migrations copy-and-swap tables.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_own_engine() -> None:
    from db.engine import create_engine

    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    async with engine.begin() as connection:
        await connection.run_sync(run_with)
    await engine.dispose()


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif config.attributes.get("connection") is not None:
    run_with(config.attributes["connection"])
else:
    asyncio.run(run_own_engine())

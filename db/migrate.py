"""Alembic, driven from code: the migrations ship inside the `db` package, so no alembic.ini is needed.

`upgrade_async(engine)` runs inside the bot's event loop (alembic itself is synchronous, so it runs through
`AsyncConnection.run_sync`); `upgrade(url)` and `current(url)` are the blocking forms for the CLI. Both raise
`DatabaseUnusable` (one line, password masked) for a database that cannot be opened or read.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)


MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any fixed number: PostgreSQL advisory lock held while migrating, so bot processes starting together (shards sharing
# one database) apply the migrations one after the other instead of racing.
MIGRATION_LOCK_ID = 0x6E617272  # "narr"


def alembic_config(url: str | URL | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        # The config is a ConfigParser: a `%` (a password's, or a %-escape in the URL) must be doubled to survive
        # interpolation. render_as_string keeps the password (the URL is never logged from here).
        rendered = make_url(url).render_as_string(hide_password=False)
        cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations folder has no revisions"
    return head


async def upgrade_async(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply every pending migration on `engine` in one transaction."""

    def run(sync_connection) -> None:
        if sync_connection.dialect.name == "postgresql":
            sync_connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_connection  # env.py uses it instead of opening its own engine
        command.upgrade(cfg, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def current_async(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())

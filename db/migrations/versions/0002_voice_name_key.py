"""voice names compared by a normalised key (NFKC + casefold), unique per guild library and per owner

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Existing rows get their key computed here in Python (SQLite's lower() folds only ASCII). Two existing voices whose
names now mean the same ("Émile" and "ÉMILE" in one library) both stay: the later one's key gets the suffix
"#<its id>" (so it can still be named as e.g. "ÉMILE#7") and a warning is logged.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

from db.names import voice_name_key

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

log = logging.getLogger("db.migrations")

voices = sa.table(
    "voices",
    sa.column("id", sa.Integer),
    sa.column("guild_id", sa.BigInteger),
    sa.column("owner_id", sa.BigInteger),
    sa.column("scope", sa.String),
    sa.column("name", sa.String),
    sa.column("name_key", sa.Text),
)


def unique_keys(rows) -> dict[int, str]:
    """id -> key for (id, guild_id, owner_id, scope, name) rows; names unique per library / per owner, first id wins."""
    keys: dict[int, str] = {}
    holders: dict[tuple, tuple[int, str]] = {}
    for voice_id, guild_id, owner_id, scope, name in sorted(rows):
        key = voice_name_key(name)
        space = ("guild", guild_id) if scope == "guild" else (scope, owner_id)
        if (space, key) in holders:
            first_id, first_name = holders[(space, key)]
            kept_as = name
            while (space, voice_name_key(kept_as)) in holders:  # a second pass only if "name#id" is itself taken
                kept_as = f"{kept_as}#{voice_id}"
            key = voice_name_key(kept_as)
            log.warning(
                "voice %d %r has the same name as voice %d %r (%s %s); it is kept, named by the key of %r",
                voice_id, name, first_id, first_name, space[0], space[1], kept_as,
            )  # fmt: skip
        holders[(space, key)] = (voice_id, name)
        keys[voice_id] = key
    return keys


def upgrade() -> None:
    op.add_column("voices", sa.Column("name_key", sa.Text(), nullable=False, server_default=""))
    bind = op.get_bind()
    rows = bind.execute(sa.select(voices.c.id, voices.c.guild_id, voices.c.owner_id, voices.c.scope, voices.c.name))
    keys = unique_keys([tuple(r) for r in rows])
    if keys:  # one executemany, not a statement per voice
        by_id = voices.update().where(voices.c.id == sa.bindparam("voice_id")).values(name_key=sa.bindparam("key"))
        bind.execute(by_id, [{"voice_id": voice_id, "key": key} for voice_id, key in keys.items()])
    if bind.dialect.name != "sqlite":  # SQLite cannot drop a column default without copying the table
        op.alter_column("voices", "name_key", server_default=None)
    op.create_index(
        "uq_voice_library_name_key",
        "voices",
        ["guild_id", "name_key"],
        unique=True,
        sqlite_where=sa.text("scope = 'guild'"),
        postgresql_where=sa.text("scope = 'guild'"),
    )
    op.create_index(
        "uq_voice_personal_name_key",
        "voices",
        ["owner_id", "name_key"],
        unique=True,
        sqlite_where=sa.text("scope = 'personal'"),
        postgresql_where=sa.text("scope = 'personal'"),
    )


def downgrade() -> None:
    op.drop_index("uq_voice_personal_name_key", "voices")
    op.drop_index("uq_voice_library_name_key", "voices")
    op.drop_column("voices", "name_key")  # SQLite >= 3.35 drops it in place (a batch copy would cascade to locks)

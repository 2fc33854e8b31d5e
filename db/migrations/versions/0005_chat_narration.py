"""chat narration: per-guild chat settings, bound text channels, spoken nicknames, pronunciation dictionary

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

New tables only; existing guilds read no channel until one is bound, and get the default settings.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chat_settings",
        sa.Column("guild_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("autojoin", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("require_author_in_voice", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("skip_prefix", sa.String(16), nullable=False, server_default="!"),
        sa.Column("read_prefix", sa.String(16), nullable=True),
        sa.Column("announce_names", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("name_template", sa.String(100), nullable=False, server_default="{name} said"),
        sa.Column("max_message_seconds", sa.Integer(), nullable=False, server_default="30"),
        sa.Column("emotion_tags_in_chat", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.create_table(
        "chat_channels",
        sa.Column("guild_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("text_channel_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("voice_channel_id", sa.BigInteger(), nullable=True),
        sa.Column("bound_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "nicknames",
        sa.Column("guild_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("user_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("nickname", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "dictionary_rules",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("pattern", sa.String(200), nullable=False),
        sa.Column("replacement", sa.String(200), nullable=False),
        sa.Column("is_regex", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_dictionary_rules_owner", "dictionary_rules", ["guild_id", "user_id"])


def downgrade() -> None:
    op.drop_index("ix_dictionary_rules_owner", "dictionary_rules")
    op.drop_table("dictionary_rules")
    op.drop_table("nicknames")
    op.drop_table("chat_channels")
    op.drop_table("chat_settings")

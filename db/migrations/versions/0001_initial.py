"""initial schema: voices, locks, renders, guild settings

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "voices",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("owner_id", sa.BigInteger(), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("model", sa.String(512), nullable=False),
        sa.Column("speaker", sa.String(64), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("ref_clip_path", sa.String(1024), nullable=True),
        sa.Column("transcript", sa.Text(), nullable=True),
        sa.Column("consent", sa.Boolean(), nullable=False),
        sa.Column("timbre", sa.LargeBinary(), nullable=True),
        sa.Column("language", sa.String(32), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("guild_id", "owner_id", "scope", "name", name="uq_voice_name"),
    )
    op.create_index("ix_voices_guild_id", "voices", ["guild_id"])
    op.create_index("ix_voices_owner_id", "voices", ["owner_id"])
    op.create_table(
        "locks",
        sa.Column("user_id", sa.BigInteger(), primary_key=True),
        sa.Column("guild_id", sa.BigInteger(), primary_key=True),
        sa.Column("voice_id", sa.Integer(), sa.ForeignKey("voices.id", ondelete="CASCADE"), nullable=False),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_locks_voice_id", "locks", ["voice_id"])
    op.create_table(
        "renders",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("script", sa.Text(), nullable=False),
        sa.Column("voice_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("output_path", sa.String(1024), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("audio_seconds", sa.Float(), nullable=True),
        sa.Column("render_seconds", sa.Float(), nullable=True),
        sa.Column("first_audio_seconds", sa.Float(), nullable=True),
        sa.Column("notified", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_renders_guild_id", "renders", ["guild_id"])
    op.create_index("ix_renders_user_id", "renders", ["user_id"])
    op.create_index("ix_renders_status", "renders", ["status"])
    op.create_table(
        "guild_settings",
        sa.Column("guild_id", sa.BigInteger(), primary_key=True),
        sa.Column("max_script_chars", sa.Integer(), nullable=True),
        sa.Column("required_role_id", sa.BigInteger(), nullable=True),
        sa.Column("default_voice", sa.String(64), nullable=True),
        sa.Column("auto_leave", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("guild_settings")
    op.drop_index("ix_renders_status", "renders")
    op.drop_index("ix_renders_user_id", "renders")
    op.drop_index("ix_renders_guild_id", "renders")
    op.drop_table("renders")
    op.drop_index("ix_locks_voice_id", "locks")
    op.drop_table("locks")
    op.drop_index("ix_voices_owner_id", "voices")
    op.drop_index("ix_voices_guild_id", "voices")
    op.drop_table("voices")

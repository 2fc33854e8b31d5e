"""retention looks renders up by age; a guild may name a role that manages others' renders and moves the bot

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Existing guilds get no manage role (only Manage Server may then stop or skip others, as before the setting existed).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_renders_created_at", "renders", ["created_at"])
    op.add_column("guild_settings", sa.Column("manage_role_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("guild_settings", "manage_role_id")
    op.drop_index("ix_renders_created_at", "renders")

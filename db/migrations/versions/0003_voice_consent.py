"""consent records on voices: the speaker, pending/confirmed, when, and who may use the voice

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Existing voices become 'confirmed': they were registered before the speaker could confirm, under the registrant's
consent checkbox. For existing cloned voices `consented_at` is their registration time; the speaker is unknown (NULL).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("voices", sa.Column("speaker_user_id", sa.BigInteger(), nullable=True))
    op.add_column("voices", sa.Column("consent_state", sa.String(16), nullable=False, server_default="confirmed"))
    op.add_column("voices", sa.Column("consented_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("voices", sa.Column("allowed_role_id", sa.BigInteger(), nullable=True))
    op.add_column("voices", sa.Column("speaker_only", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index("ix_voices_speaker_user_id", "voices", ["speaker_user_id"])
    voices = sa.table(
        "voices", sa.column("kind", sa.String), sa.column("created_at", sa.DateTime), sa.column("consented_at")
    )
    op.execute(voices.update().where(voices.c.kind == "cloned").values(consented_at=voices.c.created_at))


def downgrade() -> None:
    op.drop_index("ix_voices_speaker_user_id", "voices")
    for column in ("speaker_only", "allowed_role_id", "consented_at", "consent_state", "speaker_user_id"):
        op.drop_column("voices", column)  # in place: a batch copy of voices would cascade to locks

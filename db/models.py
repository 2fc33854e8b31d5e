"""SQLAlchemy 2 typed models: the voice library, locked identities, renders and guild settings.

Ids are Discord snowflakes stored as plain integers; nothing here knows a Discord object. A timbre vector is stored as
raw little-endian float32 bytes (`hidden_size` values), the way `numpy.ndarray.tobytes()` writes it.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class VoiceRow(Base):
    """A voice: a guild library entry (scope "guild") or a personal one (scope "personal", owner only).

    kind: preset | designed | cloned | finetuned. `speaker` names a preset row of a CustomVoice checkpoint; `model` is
    the checkpoint that renders it; `timbre` is the locked x-vector (float32 bytes) for designed and cloned voices.
    """

    __tablename__ = "voices"
    __table_args__ = (UniqueConstraint("guild_id", "owner_id", "scope", "name", name="uq_voice_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, index=True)  # 0 = every guild (imported fine-tunes)
    owner_id: Mapped[int] = mapped_column(BigInteger, index=True)  # who registered or designed it (0 = the operator)
    scope: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(512), default="")
    speaker: Mapped[str | None] = mapped_column(String(64), nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    ref_clip_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    transcript: Mapped[str | None] = mapped_column(Text, nullable=True)
    consent: Mapped[bool] = mapped_column(Boolean, default=False)
    timbre: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    language: Mapped[str] = mapped_column(String(32), default="auto")
    seed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LockRow(Base):
    """The identity a user has locked in a guild: every /say without a voice uses it."""

    __tablename__ = "locks"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    voice_id: Mapped[int] = mapped_column(ForeignKey("voices.id", ondelete="CASCADE"), index=True)
    locked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RenderRow(Base):
    """One /say: who asked, what, and what became of it. status: queued | running | done | failed | cancelled |
    interrupted (the process died while it ran; `notified` turns true once its owner was told)."""

    __tablename__ = "renders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, index=True)
    channel_id: Mapped[int] = mapped_column(BigInteger)  # text channel the command came from
    user_id: Mapped[int] = mapped_column(BigInteger, index=True)
    script: Mapped[str] = mapped_column(Text)
    voice_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    output_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    audio_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    render_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    first_audio_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    notified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class GuildSettingsRow(Base):
    """Per-guild overrides; a missing row means the process defaults."""

    __tablename__ = "guild_settings"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    max_script_chars: Mapped[int | None] = mapped_column(Integer, nullable=True)
    required_role_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    default_voice: Mapped[str | None] = mapped_column(String(64), nullable=True)
    auto_leave: Mapped[bool] = mapped_column(Boolean, default=True)

"""SQLAlchemy 2 typed models: the voice library, locked identities, renders, guild settings and chat narration.

Ids are Discord snowflakes stored as plain integers; nothing here knows a Discord object. A timbre vector is stored as
raw little-endian float32 bytes (`hidden_size` values), the way `numpy.ndarray.tobytes()` writes it. Times are aware
UTC datetimes on every backend (SQLite keeps no zone, so `UTCDateTime` puts it back).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

CONSENT_STATES = ("pending", "confirmed")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already (that is how every stored time was written)."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class UTCDateTime(TypeDecorator):
    """`DateTime(timezone=True)` that stores UTC and always reads back an aware UTC datetime (SQLite drops zones,
    so without this SQLite and PostgreSQL would hand back different kinds of datetime, and SQLite's text comparison
    of a cutoff in another zone would be wrong)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else as_utc(value)

    def process_result_value(self, value, dialect):
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime}


class VoiceRow(Base):
    """A voice: a guild library entry (scope "guild") or a personal one (scope "personal", owner only, every guild).

    kind: preset | designed | cloned | finetuned. `speaker` names a preset row of a CustomVoice checkpoint; `model` is
    the checkpoint that renders it; `timbre` is the locked x-vector (float32 bytes) for designed and cloned voices.
    `name_key` (`db.names.voice_name_key(name)`) is what names are compared by: unique per guild library and per
    owner's personal voices. A cloned voice records the person it was cloned from (`speaker_user_id`); it is usable
    only once that person confirmed (`consent_state`), and may be restricted to one role or to the speaker alone.
    """

    __tablename__ = "voices"
    __table_args__ = (
        # The first schema's rule, on the raw name. The key indexes below imply it; it stays because dropping it
        # would make SQLite copy the table.
        UniqueConstraint("guild_id", "owner_id", "scope", "name", name="uq_voice_name"),
        Index(
            "uq_voice_library_name_key",
            "guild_id",
            "name_key",
            unique=True,
            sqlite_where=text("scope = 'guild'"),
            postgresql_where=text("scope = 'guild'"),
        ),
        Index(
            "uq_voice_personal_name_key",
            "owner_id",
            "name_key",
            unique=True,
            sqlite_where=text("scope = 'personal'"),
            postgresql_where=text("scope = 'personal'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, index=True)  # 0 = every guild (imported fine-tunes)
    owner_id: Mapped[int] = mapped_column(BigInteger, index=True)  # who registered or designed it (0 = the operator)
    scope: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    name_key: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(512), default="")
    speaker: Mapped[str | None] = mapped_column(String(64), nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    ref_clip_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    transcript: Mapped[str | None] = mapped_column(Text, nullable=True)
    consent: Mapped[bool] = mapped_column(Boolean, default=False)
    timbre: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    language: Mapped[str] = mapped_column(String(32), default="auto")
    seed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    speaker_user_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    consent_state: Mapped[str] = mapped_column(String(16), default="confirmed", server_default="confirmed")
    consented_at: Mapped[datetime | None] = mapped_column(nullable=True)
    allowed_role_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    speaker_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class LockRow(Base):
    """The identity a user has locked in a guild: every /say without a voice uses it."""

    __tablename__ = "locks"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    voice_id: Mapped[int] = mapped_column(ForeignKey("voices.id", ondelete="CASCADE"), index=True)
    locked_at: Mapped[datetime] = mapped_column(default=utcnow)


class RenderRow(Base):
    """One /say: who asked, what, and what became of it. status: queued | running | done | failed | cancelled |
    interrupted (the process died while it ran; `notified` turns true once its owner was told). The master's JSON
    sidecar lies beside `output_path` with the suffix `.json`; retention deletes both, or blanks `script`."""

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
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class GuildSettingsRow(Base):
    """Per-guild overrides; a missing row means the process defaults. `manage_role_id`: a role whose members may
    stop or skip others' renders and move the bot, besides those with the Manage Server permission."""

    __tablename__ = "guild_settings"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    max_script_chars: Mapped[int | None] = mapped_column(Integer, nullable=True)
    required_role_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    default_voice: Mapped[str | None] = mapped_column(String(64), nullable=True)
    auto_leave: Mapped[bool] = mapped_column(Boolean, default=True)
    manage_role_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ChatSettingsRow(Base):
    """How a guild's bound text channels are read aloud; a missing row means the defaults (db.chat.ChatSettings)."""

    __tablename__ = "chat_settings"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    autojoin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    require_author_in_voice: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    skip_prefix: Mapped[str] = mapped_column(String(16), default="!", server_default="!")
    read_prefix: Mapped[str | None] = mapped_column(String(16), nullable=True)
    announce_names: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    name_template: Mapped[str] = mapped_column(String(100), default="{name} said", server_default="{name} said")
    max_message_seconds: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    emotion_tags_in_chat: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class ChatChannelRow(Base):
    """A text channel read aloud; `voice_channel_id` is where (None: wherever the bot is, or the author's channel)."""

    __tablename__ = "chat_channels"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    text_channel_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    voice_channel_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    bound_at: Mapped[datetime] = mapped_column(default=utcnow)


class NicknameRow(Base):
    """The name the bot says for a member in one guild ("alice said")."""

    __tablename__ = "nicknames"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    nickname: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DictionaryRuleRow(Base):
    """A pronunciation rule: `user_id` None is a guild rule, else that member's own (which wins over the guild's)."""

    __tablename__ = "dictionary_rules"
    __table_args__ = (Index("ix_dictionary_rules_owner", "guild_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    pattern: Mapped[str] = mapped_column(String(200))
    replacement: Mapped[str] = mapped_column(String(200))
    is_regex: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

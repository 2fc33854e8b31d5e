"""Async repositories: small functions that take a session and return plain frozen dataclasses.

Callers own the transaction (`async with db.sessions.begin() as session:`). Nothing here knows Discord; ids are ints.
Names are looked up by `voice_name_key` (NFKC + casefold), so "Émile", "ÉMILE" and "émile" are one name. Voices whose
speaker has not yet confirmed (consent_state "pending") are not usable: lookups for use skip them, while the name
checks (`name_taken`, `library_voice`) still see them. More repositories: db.consent, db.retention, db.chat.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.errors import VoiceNameTaken
from db.models import GuildSettingsRow, LockRow, RenderRow, VoiceRow, utcnow
from db.names import voice_name_key

GLOBAL_GUILD = 0  # voices imported by the operator (`narrator voices import`) are visible in every guild
VOICE_KINDS = ("preset", "designed", "cloned", "finetuned")
VOICE_SCOPES = ("guild", "personal")
RENDER_STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")


@dataclass(frozen=True)
class Voice:
    id: int
    guild_id: int
    owner_id: int
    scope: str
    kind: str
    name: str
    model: str
    speaker: str | None
    description: str | None
    ref_clip_path: str | None
    transcript: str | None
    consent: bool
    timbre: bytes | None  # float32 little-endian x-vector
    language: str
    seed: int
    created_at: datetime
    name_key: str = ""
    speaker_user_id: int | None = None  # the person a cloned voice was made from (None: unknown or not cloned)
    consent_state: str = "confirmed"  # pending | confirmed
    consented_at: datetime | None = None
    allowed_role_id: int | None = None  # only members with this role may use it (None: everyone who sees it)
    speaker_only: bool = False  # only the speaker may use it

    @property
    def usable(self) -> bool:
        return self.consent_state == "confirmed"


@dataclass(frozen=True)
class NewVoice:
    guild_id: int
    owner_id: int
    scope: str
    kind: str
    name: str
    model: str = ""
    speaker: str | None = None
    description: str | None = None
    ref_clip_path: str | None = None
    transcript: str | None = None
    consent: bool = False
    timbre: bytes | None = None
    language: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in VOICE_KINDS:
            raise ValueError(f"voice kind must be one of {VOICE_KINDS}, got {self.kind!r}")
        if self.scope not in VOICE_SCOPES:
            raise ValueError(f"voice scope must be one of {VOICE_SCOPES}, got {self.scope!r}")


@dataclass(frozen=True)
class Render:
    id: int
    guild_id: int
    channel_id: int
    user_id: int
    script: str
    voice_id: int | None
    status: str
    output_path: str | None
    error: str | None
    audio_seconds: float | None
    render_seconds: float | None
    first_audio_seconds: float | None
    notified: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class GuildSettings:
    guild_id: int
    max_script_chars: int | None = None
    required_role_id: int | None = None
    default_voice: str | None = None
    auto_leave: bool = True
    manage_role_id: int | None = None  # may stop/skip others' renders and move the bot (besides Manage Server)


def may_use(voice: Voice, user_id: int, role_ids: Iterable[int] = ()) -> bool:
    """Whether this member may speak with `voice` (it is visible to them): confirmed, and within its restriction."""
    if not voice.usable:
        return False
    if voice.speaker_only and user_id != voice.speaker_user_id:
        return False
    return voice.allowed_role_id is None or voice.allowed_role_id in set(role_ids) or user_id == voice.speaker_user_id


def voice_from_row(row: VoiceRow) -> Voice:
    return Voice(**{name: getattr(row, name) for name in Voice.__dataclass_fields__})


def _render(row: RenderRow) -> Render:
    return Render(**{name: getattr(row, name) for name in Render.__dataclass_fields__})


# ---- voices -------------------------------------------------------------------------------------------------------


async def add_voice(session: AsyncSession, new: NewVoice, **consent: object) -> Voice:
    """Insert a voice; `VoiceNameTaken` if its name is already used where it must be unique. `consent`: any of the
    consent columns (speaker_user_id, consent_state, consented_at, allowed_role_id, speaker_only), for db.consent."""
    taken = await name_taken(session, new.guild_id, new.owner_id, new.scope, new.name)
    if taken is not None:
        raise VoiceNameTaken(f"a voice called {taken.name!r} already exists there (voice {taken.id})")
    row = VoiceRow(**new.__dict__, name_key=voice_name_key(new.name), created_at=utcnow(), **consent)
    session.add(row)
    await session.flush()
    return voice_from_row(row)


async def name_taken(session: AsyncSession, guild_id: int, owner_id: int, scope: str, name: str) -> Voice | None:
    """The voice that already holds `name` where a new one would need it: the guild's library (scope "guild") or
    the owner's personal voices (scope "personal", across guilds). Pending voices hold their names too."""
    where = VoiceRow.guild_id == guild_id if scope == "guild" else VoiceRow.owner_id == owner_id
    row = await session.scalar(
        select(VoiceRow).where(VoiceRow.scope == scope, where, VoiceRow.name_key == voice_name_key(name))
    )
    return voice_from_row(row) if row else None


def _visible(guild_id: int, user_id: int):
    """Voices a user may use in a guild: the guild library, operator imports, and their own personal voices."""
    return or_(
        (VoiceRow.scope == "guild") & VoiceRow.guild_id.in_((guild_id, GLOBAL_GUILD)),
        (VoiceRow.scope == "personal") & (VoiceRow.owner_id == user_id),
    )


def _usable(include_pending: bool):
    return true() if include_pending else VoiceRow.consent_state == "confirmed"


async def list_voices(
    session: AsyncSession, guild_id: int, user_id: int, *, include_pending: bool = False
) -> list[Voice]:
    rows = await session.scalars(
        select(VoiceRow).where(_visible(guild_id, user_id), _usable(include_pending)).order_by(VoiceRow.name_key)
    )
    return [voice_from_row(r) for r in rows]


async def all_voices(session: AsyncSession) -> list[Voice]:
    """Every voice of every guild (for the operator's `narrator voices list`)."""
    rows = await session.scalars(select(VoiceRow).order_by(VoiceRow.guild_id, VoiceRow.name))
    return [voice_from_row(r) for r in rows]


async def find_voice(
    session: AsyncSession, guild_id: int, user_id: int, name: str, *, include_pending: bool = False
) -> Voice | None:
    """A voice by name key as this user sees it; a personal voice wins over a library one, the guild's over an
    operator import. Voices awaiting their speaker's consent only with `include_pending`."""
    rows = await session.scalars(
        select(VoiceRow).where(
            _visible(guild_id, user_id), _usable(include_pending), VoiceRow.name_key == voice_name_key(name)
        )
    )
    found = sorted((voice_from_row(r) for r in rows), key=lambda v: (v.scope != "personal", v.guild_id == GLOBAL_GUILD))
    return found[0] if found else None


async def find_voice_anywhere(session: AsyncSession, guild_id: int, name: str) -> list[Voice]:
    """Every voice of that name in the guild, whoever owns it, pending ones too (to tell "not yours" or "not yet
    confirmed" from "unknown")."""
    rows = await session.scalars(
        select(VoiceRow).where(
            VoiceRow.guild_id.in_((guild_id, GLOBAL_GUILD)), VoiceRow.name_key == voice_name_key(name)
        )
    )
    return [voice_from_row(r) for r in rows]


async def get_voice(session: AsyncSession, voice_id: int) -> Voice | None:
    row = await session.get(VoiceRow, voice_id)
    return voice_from_row(row) if row else None


async def library_voice(session: AsyncSession, guild_id: int, name: str) -> Voice | None:
    """The guild library's voice of that name (pending or not: the name is taken either way)."""
    row = await session.scalar(
        select(VoiceRow).where(
            VoiceRow.scope == "guild", VoiceRow.guild_id == guild_id, VoiceRow.name_key == voice_name_key(name)
        )
    )
    return voice_from_row(row) if row else None


async def remove_voice(session: AsyncSession, voice_id: int) -> bool:
    await session.execute(delete(LockRow).where(LockRow.voice_id == voice_id))
    result = await session.execute(delete(VoiceRow).where(VoiceRow.id == voice_id))
    return result.rowcount > 0


# ---- locks --------------------------------------------------------------------------------------------------------


async def lock_voice(session: AsyncSession, user_id: int, guild_id: int, voice_id: int) -> None:
    row = await session.get(LockRow, (user_id, guild_id))
    if row is None:
        session.add(LockRow(user_id=user_id, guild_id=guild_id, voice_id=voice_id, locked_at=utcnow()))
    else:
        row.voice_id, row.locked_at = voice_id, utcnow()
    await session.flush()


async def unlock_voice(session: AsyncSession, user_id: int, guild_id: int) -> bool:
    result = await session.execute(delete(LockRow).where(LockRow.user_id == user_id, LockRow.guild_id == guild_id))
    return result.rowcount > 0


async def locked_voice(session: AsyncSession, user_id: int, guild_id: int) -> Voice | None:
    row = await session.scalar(
        select(VoiceRow)
        .join(LockRow, LockRow.voice_id == VoiceRow.id)
        .where(LockRow.user_id == user_id, LockRow.guild_id == guild_id)
    )
    return voice_from_row(row) if row else None


# ---- renders ------------------------------------------------------------------------------------------------------


async def add_render(
    session: AsyncSession, guild_id: int, channel_id: int, user_id: int, script: str, voice_id: int | None
) -> Render:
    row = RenderRow(
        guild_id=guild_id,
        channel_id=channel_id,
        user_id=user_id,
        script=script,
        voice_id=voice_id,
        status="queued",
        notified=False,
        created_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    return _render(row)


async def get_render(session: AsyncSession, render_id: int) -> Render | None:
    row = await session.get(RenderRow, render_id)
    return _render(row) if row else None


async def mark_render(session: AsyncSession, render_id: int, status: str, **values: object) -> None:
    """Set the status (and any of output_path, error, audio_seconds, render_seconds, first_audio_seconds)."""
    if status not in RENDER_STATUSES:
        raise ValueError(f"render status must be one of {RENDER_STATUSES}, got {status!r}")
    allowed = {"output_path", "error", "audio_seconds", "render_seconds", "first_audio_seconds"}
    unknown = set(values) - allowed
    if unknown:
        raise ValueError(f"unknown render fields {sorted(unknown)}; allowed: {sorted(allowed)}")
    stamps: dict[str, object] = {}
    if status == "running":
        stamps["started_at"] = utcnow()
    elif status != "queued":
        stamps["finished_at"] = utcnow()
    await session.execute(update(RenderRow).where(RenderRow.id == render_id).values(status=status, **stamps, **values))


async def mark_unfinished_interrupted(session: AsyncSession) -> int:
    """At start: renders left queued or running by a previous process become `interrupted`; returns how many."""
    result = await session.execute(
        update(RenderRow)
        .where(RenderRow.status.in_(("queued", "running")))
        .values(status="interrupted", finished_at=utcnow(), error="the bot stopped while this render was in progress")
    )
    return result.rowcount


async def unnotified_interrupted(session: AsyncSession) -> list[Render]:
    rows = await session.scalars(
        select(RenderRow).where(RenderRow.status == "interrupted", RenderRow.notified.is_(False)).order_by(RenderRow.id)
    )
    return [_render(r) for r in rows]


async def mark_notified(session: AsyncSession, render_id: int) -> None:
    await session.execute(update(RenderRow).where(RenderRow.id == render_id).values(notified=True))


async def recent_renders(session: AsyncSession, guild_id: int, limit: int = 10) -> list[Render]:
    rows = await session.scalars(
        select(RenderRow).where(RenderRow.guild_id == guild_id).order_by(RenderRow.id.desc()).limit(limit)
    )
    return [_render(r) for r in rows]


# ---- guild settings -----------------------------------------------------------------------------------------------


async def get_guild_settings(session: AsyncSession, guild_id: int) -> GuildSettings:
    row = await session.get(GuildSettingsRow, guild_id)
    if row is None:
        return GuildSettings(guild_id)
    return GuildSettings(**{name: getattr(row, name) for name in GuildSettings.__dataclass_fields__})


async def update_guild_settings(session: AsyncSession, guild_id: int, **values: object) -> GuildSettings:
    """Change some of max_script_chars, required_role_id, default_voice, auto_leave, manage_role_id; returns the new
    settings."""
    allowed = set(GuildSettings.__dataclass_fields__) - {"guild_id"}
    unknown = set(values) - allowed
    if unknown:
        raise ValueError(f"unknown guild settings {sorted(unknown)}; allowed: {sorted(allowed)}")
    row = await session.get(GuildSettingsRow, guild_id)
    if row is None:
        row = GuildSettingsRow(guild_id=guild_id, auto_leave=True)
        session.add(row)
    for name, value in values.items():
        setattr(row, name, value)
    await session.flush()
    return await get_guild_settings(session, guild_id)

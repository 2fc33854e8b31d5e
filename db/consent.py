"""Consent and ownership of voices: a cloned voice is pending until the person it was cloned from confirms it; that
person can list the voices made from them (in every guild) and revoke any of them; members can see, count and delete
their personal voices; a guild's voices go when the bot leaves it.

Every function takes the caller's session (the caller owns the transaction). Deleting returns the reference clip
paths instead of deleting files, so the caller removes them after the transaction commits.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.errors import NotTheSpeaker
from db.models import LockRow, VoiceRow, utcnow
from db.names import voice_name_key
from db.repo import GLOBAL_GUILD, NewVoice, Voice, add_voice, voice_from_row


@dataclass(frozen=True)
class RemovedVoice:
    """What is left of a deleted voice: enough to tell the user and to delete its clip file."""

    id: int
    guild_id: int
    name: str
    ref_clip_path: str | None


def _removed(voice: Voice) -> RemovedVoice:
    return RemovedVoice(voice.id, voice.guild_id, voice.name, voice.ref_clip_path)


async def _delete_voices(session: AsyncSession, voice_ids: list[int]) -> None:
    if voice_ids:  # locks first: SQLite without foreign keys enforced (an old file, a tool) must not keep orphans
        await session.execute(delete(LockRow).where(LockRow.voice_id.in_(voice_ids)))
        await session.execute(delete(VoiceRow).where(VoiceRow.id.in_(voice_ids)))


# ---- cloned voices and their speaker --------------------------------------------------------------------------------


async def create_pending_clone(
    session: AsyncSession,
    new: NewVoice,
    speaker_user_id: int,
    *,
    allowed_role_id: int | None = None,
    speaker_only: bool = False,
) -> Voice:
    """Store a cloned voice that nobody can use until `speaker_user_id` confirms it (`confirm_consent`). Its name is
    taken at once (VoiceNameTaken if it is not free)."""
    if new.kind != "cloned":
        raise ValueError(f"only cloned voices wait for a speaker's consent, not {new.kind!r} ones")
    return await add_voice(
        session,
        new,
        speaker_user_id=speaker_user_id,
        consent_state="pending",
        consented_at=None,
        allowed_role_id=allowed_role_id,
        speaker_only=speaker_only,
    )


async def confirm_consent(session: AsyncSession, voice_id: int, user_id: int) -> Voice | None:
    """The speaker accepts their clone: it becomes usable and the time is recorded. None if there is no such voice;
    `NotTheSpeaker` if `user_id` is someone else. Confirming twice keeps the first time."""
    row = await session.get(VoiceRow, voice_id)
    if row is None:
        return None
    if row.speaker_user_id is None or row.speaker_user_id != user_id:
        raise NotTheSpeaker(f"only the person whose voice {row.name!r} was cloned from can confirm it")
    if row.consent_state != "confirmed":
        row.consent_state, row.consent, row.consented_at = "confirmed", True, utcnow()
        await session.flush()
    return voice_from_row(row)


async def pending_for_speaker(session: AsyncSession, speaker_user_id: int) -> list[Voice]:
    """Clones waiting for this person's confirmation, oldest first."""
    rows = await session.scalars(
        select(VoiceRow)
        .where(VoiceRow.speaker_user_id == speaker_user_id, VoiceRow.consent_state == "pending")
        .order_by(VoiceRow.id)
    )
    return [voice_from_row(r) for r in rows]


async def voices_of_speaker(session: AsyncSession, speaker_user_id: int) -> list[Voice]:
    """Every voice made from this person, in every guild, pending or confirmed (for "my voice, where is it used")."""
    rows = await session.scalars(
        select(VoiceRow).where(VoiceRow.speaker_user_id == speaker_user_id).order_by(VoiceRow.guild_id, VoiceRow.id)
    )
    return [voice_from_row(r) for r in rows]


async def revoke_voice(session: AsyncSession, voice_id: int, speaker_user_id: int) -> RemovedVoice | None:
    """The speaker withdraws a voice made from them: the row (with its timbre vector) and the locks on it are
    deleted. None if there is no such voice; `NotTheSpeaker` for anyone else. The caller deletes `ref_clip_path`."""
    row = await session.get(VoiceRow, voice_id)
    if row is None:
        return None
    if row.speaker_user_id is None or row.speaker_user_id != speaker_user_id:
        raise NotTheSpeaker(f"only the person whose voice {row.name!r} was cloned from can revoke it")
    removed = _removed(voice_from_row(row))
    await _delete_voices(session, [voice_id])
    return removed


async def set_restriction(
    session: AsyncSession, voice_id: int, *, allowed_role_id: int | None, speaker_only: bool
) -> Voice | None:
    """Who may use a voice: members of one role (None: anyone who sees it), or only its speaker."""
    row = await session.get(VoiceRow, voice_id)
    if row is None:
        return None
    row.allowed_role_id, row.speaker_only = allowed_role_id, speaker_only
    await session.flush()
    return voice_from_row(row)


# ---- a guild's voices -----------------------------------------------------------------------------------------------


async def delete_guild_voices(session: AsyncSession, guild_id: int) -> list[str]:
    """Delete every voice created in this guild (library and personal ones made there) and every lock in it; returns
    the clip paths to delete. Operator imports (guild 0) are never deleted this way."""
    if guild_id == GLOBAL_GUILD:
        raise ValueError("guild 0 holds the operator's imported voices; remove those with `narrator voices`")
    rows = (await session.scalars(select(VoiceRow).where(VoiceRow.guild_id == guild_id))).all()
    await session.execute(delete(LockRow).where(LockRow.guild_id == guild_id))
    await _delete_voices(session, [r.id for r in rows])
    return [r.ref_clip_path for r in rows if r.ref_clip_path]


# ---- personal voices ------------------------------------------------------------------------------------------------


def _personal(owner_id: int):
    return (VoiceRow.scope == "personal") & (VoiceRow.owner_id == owner_id)


async def count_personal_voices(session: AsyncSession, owner_id: int) -> int:
    """How many personal voices this member has (every guild, pending ones included), for the per-user cap."""
    return await session.scalar(select(func.count()).select_from(VoiceRow).where(_personal(owner_id))) or 0


async def list_personal_voices(session: AsyncSession, owner_id: int) -> list[Voice]:
    rows = await session.scalars(select(VoiceRow).where(_personal(owner_id)).order_by(VoiceRow.name_key))
    return [voice_from_row(r) for r in rows]


async def delete_personal_voice(session: AsyncSession, owner_id: int, name: str) -> RemovedVoice | None:
    """The owner deletes one of their personal voices by name (compared by key); None if they have none so named.
    The caller deletes `ref_clip_path`."""
    row = await session.scalar(select(VoiceRow).where(_personal(owner_id), VoiceRow.name_key == voice_name_key(name)))
    if row is None:
        return None
    removed = _removed(voice_from_row(row))
    await _delete_voices(session, [row.id])
    return removed

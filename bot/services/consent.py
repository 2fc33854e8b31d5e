"""Consent for cloned voices, and what a speaker can do about voices made from them.

- A clone registered for someone else (`/voices register ... speaker:@member`) is stored *pending*
  (`db.consent.create_pending_clone`): nobody can use it until that member confirms, with `/voice consent name:` or
  the Confirm button of the request the bot posts (`request_text`). The time and the speaker's id are stored.
- `/voice mine` lists every voice made from you, in every server; `/voice revoke name:` deletes it: the row, its
  timbre vector, the locks on it and its reference clip file.
- A server can restrict a cloned voice to one role or to its speaker (`/voices restrict`).
- When the bot is removed from a server, that server's voices and clips are deleted (unless NARRATOR_KEEP_GUILD_DATA).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot.errors import NotAllowed, UnknownVoice, UserError
from db import consent, repo
from db.errors import NotTheSpeaker
from db.names import voice_name_key

if TYPE_CHECKING:
    from bot.services.library import VoiceLibrary
    from bot.settings import Settings
    from db.engine import Database

log = logging.getLogger(__name__)


def request_text(voice: repo.Voice, registered_by: int) -> str:
    """The message that asks the speaker to confirm (mentions them; nothing else is pinged)."""
    return (
        f"<@{voice.speaker_user_id}>, <@{registered_by}> registered a voice called **{voice.name}** cloned from a "
        "recording of you. Nobody can use it until you agree. Press **Confirm** or run "
        f"`/voice consent name:{voice.name}` here to allow it, or **Decline** / `/voice revoke name:{voice.name}` "
        "to delete it. You can see every voice made from you with `/voice mine`."
    )


class ConsentService:
    def __init__(self, db: Database, settings: Settings, library: VoiceLibrary) -> None:
        self.db = db
        self.settings = settings
        self.library = library

    # -- the speaker -------------------------------------------------------------------------------------------------

    async def confirm(self, guild_id: int | None, user_id: int, name: str) -> repo.Voice:
        """The speaker confirms a pending clone by name (this server's first, else their only one of that name)."""
        async with self.db.sessions() as s:
            pending = await consent.pending_for_speaker(s, user_id)
        voice = self._pick(pending, guild_id, name)
        if voice is None:
            raise UnknownVoice(
                f"No voice called `{name[:40]}` is waiting for your consent. `/voice mine` lists the voices made "
                "from you."
            )
        return await self.confirm_id(voice.id, user_id)

    async def confirm_id(self, voice_id: int, user_id: int) -> repo.Voice:
        try:
            async with self.db.sessions.begin() as s:
                voice = await consent.confirm_consent(s, voice_id, user_id)
        except NotTheSpeaker:
            raise NotAllowed("Only the person this voice was cloned from can confirm it.") from None
        if voice is None:
            raise UnknownVoice("That voice no longer exists (it was removed or revoked).")
        log.info("voice %d confirmed by its speaker %s", voice.id, user_id)
        return voice

    async def mine(self, user_id: int) -> list[repo.Voice]:
        async with self.db.sessions() as s:
            return await consent.voices_of_speaker(s, user_id)

    async def revoke(self, guild_id: int | None, user_id: int, name: str) -> list[consent.RemovedVoice]:
        """The speaker withdraws every voice of that name made from them (one per server it was registered in);
        their clips are deleted."""
        key = voice_name_key(name)
        targets = [v for v in await self.mine(user_id) if v.name_key == key]
        if not targets:
            raise UnknownVoice(f"No voice called `{name[:40]}` was made from you. `/voice mine` lists them.")
        return [await self.revoke_id(v.id, user_id) for v in targets]

    async def revoke_id(self, voice_id: int, user_id: int) -> consent.RemovedVoice:
        try:
            async with self.db.sessions.begin() as s:
                removed = await consent.revoke_voice(s, voice_id, user_id)
        except NotTheSpeaker:
            raise NotAllowed("Only the person this voice was cloned from can revoke it.") from None
        if removed is None:
            raise UnknownVoice("That voice no longer exists (it was removed or revoked).")
        self.library.delete_clips([removed.ref_clip_path])
        log.info("voice %d revoked by its speaker %s", removed.id, user_id)
        return removed

    @staticmethod
    def _pick(voices: list[repo.Voice], guild_id: int | None, name: str) -> repo.Voice | None:
        key = voice_name_key(name)
        named = [v for v in voices if v.name_key == key]
        here = [v for v in named if v.guild_id == guild_id]
        return (here or named or [None])[0]

    # -- the server --------------------------------------------------------------------------------------------------

    async def restrict(self, guild_id: int, name: str, *, role_id: int | None, speaker_only: bool) -> repo.Voice:
        """Who may use a cloned library voice here: one role (None: everyone), or only its speaker."""
        async with self.db.sessions.begin() as s:
            voice = await repo.library_voice(s, guild_id, name.strip())
            if voice is None:
                raise UnknownVoice(f"This server has no library voice called `{name[:40]}`. See /voice list.")
            if voice.kind != "cloned" or voice.speaker_user_id is None:
                raise UserError(
                    f"`{voice.name}` is not cloned from a member, so there is no speaker to restrict it to."
                )
            return await consent.set_restriction(s, voice.id, allowed_role_id=role_id, speaker_only=speaker_only)

    async def forget_guild(self, guild_id: int) -> int:
        """The bot left a server: delete its voices and their clips (unless the operator keeps them); returns how
        many clip files were deleted."""
        if self.settings.keep_guild_data:
            log.info("removed from guild %s; keeping its voices (NARRATOR_KEEP_GUILD_DATA)", guild_id)
            return 0
        async with self.db.sessions.begin() as s:
            clips = await consent.delete_guild_voices(s, guild_id)
        deleted = self.library.delete_clips(clips)
        log.info("removed from guild %s: deleted its voices and %d clip file(s)", guild_id, deleted)
        return deleted


def describe_restriction(voice: repo.Voice) -> str:
    if voice.speaker_only:
        return "only its speaker may use it"
    if voice.allowed_role_id:
        return f"only members with <@&{voice.allowed_role_id}> (and its speaker) may use it"
    return "everyone here may use it"

"""The voice library service: list, resolve, lock and manage voices. Cogs call this; it calls `db.repo`.

A voice name is 1-32 letters (any script), digits, spaces, `_` or `-`, compared by `db.names.voice_name_key` (NFKC +
casefold: "Émile" and "ÉMILE" are one name); user text never becomes a path (clips are stored under
`data_dir/voices/<guild>/<random hex>.wav`). Model work (x-vectors, designing) is not done here: `bot.services.creation`
submits it to the inference worker and hands the results back to `add_*`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Iterable
from pathlib import Path

from bot.engine.protocol import Engine, EngineError
from bot.errors import NotAllowed, NotYourVoice, UnknownVoice, UserError
from bot.services.acting import current_roles
from bot.settings import Settings
from db import consent, repo
from db.engine import Database
from db.errors import VoiceNameTaken
from db.models import utcnow
from db.names import voice_name_key

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[\w][\w \-]{0,31}$")
MAX_AUTOCOMPLETE = 25


def check_name(name: str) -> str:
    name = name.strip()
    if not NAME_PATTERN.match(name):
        raise UserError(
            f"`{name[:40]}` is not a usable voice name: use 1-32 letters, digits, spaces, `_` or `-`, starting with "
            "a letter or digit."
        )
    return name


class VoiceLibrary:
    def __init__(self, db: Database, settings: Settings, engine: Engine) -> None:
        self.db = db
        self.settings = settings
        self.engine = engine  # for the preset speakers of the CustomVoice checkpoint
        self._presets: list[str] | None = None

    # -- reading -----------------------------------------------------------------------------------------------------

    async def list(self, guild_id: int, user_id: int) -> list[repo.Voice]:
        async with self.db.sessions() as s:
            return await repo.list_voices(s, guild_id, user_id)

    async def names_starting(self, guild_id: int, user_id: int, current: str) -> list[str]:
        current = voice_name_key(current)
        names = [v.name for v in await self.list(guild_id, user_id)]
        keys = {voice_name_key(n) for n in names}
        names += [p for p in await self.preset_speakers() if voice_name_key(p) not in keys]
        return [n for n in names if current in voice_name_key(n)][:MAX_AUTOCOMPLETE]

    async def resolve(
        self, guild_id: int, user_id: int, name: str, role_ids: Iterable[int] | None = None
    ) -> repo.Voice:
        """The voice `name` as this user may use it; UnknownVoice / NotYourVoice / NotAllowed say what to do
        otherwise. `role_ids`: the member's roles (default: those of the command being served)."""
        async with self.db.sessions() as s:
            voice = await repo.find_voice(s, guild_id, user_id, name)
            others = [] if voice is not None else await repo.find_voice_anywhere(s, guild_id, name.strip())
        if voice is not None:
            self.check_may_use(voice, user_id, role_ids)
            return voice
        if any(not v.usable for v in others):
            raise NotAllowed(
                f"`{name[:40]}` is waiting for the consent of the person it was cloned from; it can be used once "
                "they confirm it with /voice consent."
            )
        if others:
            raise NotYourVoice(
                f"`{name}` is someone else's personal voice. Pick one of yours or the server's: /voice list"
            )
        preset = await self._preset_voice(guild_id, name)
        if preset is not None:
            return preset
        raise UnknownVoice(f"There is no voice called `{name[:40]}`. See /voice list for the voices you can use.")

    @staticmethod
    def check_may_use(voice: repo.Voice, user_id: int, role_ids: Iterable[int] | None = None) -> None:
        """NotAllowed unless this member may speak with `voice` (confirmed by its speaker, within its restriction)."""
        roles = set(current_roles() if role_ids is None else role_ids)
        if repo.may_use(voice, user_id, roles):
            return
        if not voice.usable:
            raise NotAllowed(f"`{voice.name}` is waiting for its speaker's consent (/voice consent).")
        if voice.speaker_only:
            raise NotAllowed(f"Only the person `{voice.name}` was cloned from may use it.")
        raise NotAllowed(f"Only members with the <@&{voice.allowed_role_id}> role may use `{voice.name}`.")

    # -- preset speakers of the CustomVoice checkpoint ---------------------------------------------------------------

    async def preset_speakers(self) -> list[str]:
        """The CustomVoice checkpoint's preset speakers (lower-case; loaded at start, so this is cheap)."""
        if self._presets is None:
            try:
                info = await asyncio.to_thread(self.engine.checkpoint, self.settings.custom_voice_model)
            except EngineError as exc:  # no checkpoint to ask (yet): no preset names to offer; asked again next time
                log.warning("no preset speakers: %s", exc)
                return []
            self._presets = sorted(name.lower() for name in info.speakers)
        return self._presets

    async def _preset_voice(self, guild_id: int, name: str) -> repo.Voice | None:
        """A preset speaker used by name becomes a library voice of the guild (so it can be listed and locked)."""
        speaker = name.strip().lower()
        if speaker not in await self.preset_speakers():
            return None
        new = repo.NewVoice(guild_id=guild_id, owner_id=0, scope="guild", kind="preset", name=speaker,
                            model=self.settings.custom_voice_model, speaker=speaker)  # fmt: skip
        return await self.add(new)

    async def library_default(self, guild_id: int, user_id: int, name: str) -> repo.Voice:
        """A voice that may become the server default: visible to everyone, so from the library."""
        voice = await self.resolve(guild_id, user_id, name)
        if voice.scope != "guild":
            raise UserError(f"`{voice.name}` is a personal voice; the default must come from the server library.")
        return voice

    async def locked(self, guild_id: int, user_id: int) -> repo.Voice | None:
        async with self.db.sessions() as s:
            return await repo.locked_voice(s, user_id, guild_id)

    async def for_say(self, guild_id: int, user_id: int, explicit: str | None) -> repo.Voice | None:
        """Which voice a /say uses: the one named, else the user's lock, else the server default, else None
        (the engine's default preset speaker)."""
        if explicit:
            return await self.resolve(guild_id, user_id, explicit)
        locked = await self.locked(guild_id, user_id)
        if locked is not None:
            self.check_may_use(locked, user_id)  # a restriction may have been set since it was locked
            return locked
        async with self.db.sessions() as s:
            default = (await repo.get_guild_settings(s, guild_id)).default_voice
        if default:
            try:
                return await self.resolve(guild_id, user_id, default)
            except UserError:
                log.warning("guild %s default voice %r no longer exists", guild_id, default)
        return None

    # -- locking -----------------------------------------------------------------------------------------------------

    async def lock(self, guild_id: int, user_id: int, name: str, role_ids: Iterable[int] | None = None) -> repo.Voice:
        voice = await self.resolve(guild_id, user_id, name, role_ids)
        async with self.db.sessions.begin() as s:
            await repo.lock_voice(s, user_id, guild_id, voice.id)
        return voice

    async def unlock(self, guild_id: int, user_id: int) -> bool:
        async with self.db.sessions.begin() as s:
            return await repo.unlock_voice(s, user_id, guild_id)

    # -- adding and removing -----------------------------------------------------------------------------------------

    async def ensure_free(self, guild_id: int, owner_id: int, scope: str, name: str) -> str:
        """A checked name that is free where a new voice would need it (compared by key; pending voices hold
        their names too)."""
        name = check_name(name)
        async with self.db.sessions() as s:
            taken = await repo.name_taken(s, guild_id, owner_id, scope, name)
        if taken is not None:
            raise UserError(
                f"A voice called `{taken.name}` already exists here; choose another name or remove it first."
            )
        return name

    async def check_personal_room(self, owner_id: int) -> None:
        """A member may have at most NARRATOR_MAX_PERSONAL_VOICES personal voices (every guild together)."""
        cap = self.settings.max_personal_voices
        async with self.db.sessions() as s:
            count = await consent.count_personal_voices(s, owner_id)
        if count >= cap:
            raise UserError(
                f"You already have {count} personal voices (the limit is {cap}). Delete one with /voice delete first."
            )

    async def add(self, new: repo.NewVoice, *, lock_for: int | None = None) -> repo.Voice:
        try:
            async with self.db.sessions.begin() as s:
                voice = await repo.add_voice(s, new)
                if lock_for is not None:
                    await repo.lock_voice(s, lock_for, new.guild_id, voice.id)
        except VoiceNameTaken:  # taken since `ensure_free` looked
            raise UserError(f"A voice called `{new.name}` already exists here; choose another name.") from None
        self._log_added(voice)
        return voice

    async def add_own_clone(self, new: repo.NewVoice) -> repo.Voice:
        """A clone of the registrant's own voice: they are its speaker and registering is their consent."""
        now = utcnow()
        try:
            async with self.db.sessions.begin() as s:
                voice = await repo.add_voice(
                    s, new, speaker_user_id=new.owner_id, consent_state="confirmed", consented_at=now
                )
        except VoiceNameTaken:
            raise UserError(f"A voice called `{new.name}` already exists here; choose another name.") from None
        self._log_added(voice)
        return voice

    async def add_pending_clone(self, new: repo.NewVoice, speaker_user_id: int) -> repo.Voice:
        """A cloned voice nobody may use until `speaker_user_id` confirms it (bot.services.consent)."""
        try:
            async with self.db.sessions.begin() as s:
                voice = await consent.create_pending_clone(s, new, speaker_user_id)
        except VoiceNameTaken:
            raise UserError(f"A voice called `{new.name}` already exists here; choose another name.") from None
        self._log_added(voice)
        return voice

    @staticmethod
    def _log_added(voice: repo.Voice) -> None:
        log.info("voice %d (%s, %s, %s) added in guild %s by %s", voice.id, voice.kind, voice.scope,
                 voice.consent_state, voice.guild_id, voice.owner_id)  # fmt: skip
        log.debug("voice %d is called %r", voice.id, voice.name)  # user text: DEBUG only

    async def remove_library_voice(self, guild_id: int, name: str) -> repo.Voice:
        async with self.db.sessions.begin() as s:
            voice = await repo.library_voice(s, guild_id, name.strip())
            if voice is None:
                raise UnknownVoice(f"This server has no library voice called `{name[:40]}`. See /voice list.")
            await repo.remove_voice(s, voice.id)
        self.delete_clips([voice.ref_clip_path])
        return voice

    async def personal_voices(self, owner_id: int) -> list[repo.Voice]:
        async with self.db.sessions() as s:
            return await consent.list_personal_voices(s, owner_id)

    async def remove_personal_voice(self, owner_id: int, name: str) -> consent.RemovedVoice:
        """The owner deletes one of their personal voices (its clip file too)."""
        async with self.db.sessions.begin() as s:
            removed = await consent.delete_personal_voice(s, owner_id, name)
        if removed is None:
            raise UnknownVoice(f"You have no personal voice called `{name[:40]}`. See /voice list.")
        self.delete_clips([removed.ref_clip_path])
        return removed

    def delete_clips(self, paths: Iterable[str | None]) -> int:
        """Delete reference clips the bot stored (only under `data_dir/voices`: an operator's import elsewhere is
        theirs); returns how many files went."""
        root = (self.settings.data_dir / "voices").resolve()
        deleted = 0
        for raw in paths:
            if not raw:
                continue
            path = Path(raw).resolve()
            if not path.is_relative_to(root):
                log.info("keeping clip %s: it lies outside %s", path, root)
                continue
            try:
                path.unlink()
                deleted += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not delete clip %s: %s", path, exc)
        return deleted

    def clip_path(self, guild_id: int) -> Path:
        """A fresh, safe file name for a reference or anchor clip."""
        folder = self.settings.data_dir / "voices" / str(int(guild_id))
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{uuid.uuid4().hex}.wav"

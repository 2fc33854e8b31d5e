"""The voice library service: list, resolve, lock and manage voices. Cogs call this; it calls `db.repo`.

A voice name is 1-32 letters, digits, spaces, `_` or `-`; user text never becomes a path (clips are stored under
`data_dir/voices/<guild>/<random hex>.wav`). Model work (x-vectors, designing) is not done here: `bot.services.creation`
submits it to the inference worker and hands the results back to `add_*`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from pathlib import Path

from bot.engine.protocol import Engine, EngineError
from bot.errors import NotYourVoice, UnknownVoice, UserError
from bot.settings import Settings
from db import repo
from db.engine import Database

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
        current = current.strip().lower()
        names = [v.name for v in await self.list(guild_id, user_id)]
        names += [p for p in await self.preset_speakers() if p not in {n.lower() for n in names}]
        return [n for n in names if current in n.lower()][:MAX_AUTOCOMPLETE]

    async def resolve(self, guild_id: int, user_id: int, name: str) -> repo.Voice:
        """The voice `name` as this user may use it; UnknownVoice / NotYourVoice say what to do otherwise."""
        async with self.db.sessions() as s:
            voice = await repo.find_voice(s, guild_id, user_id, name)
            if voice is not None:
                return voice
            others = await repo.find_voice_anywhere(s, guild_id, name.strip())
        if others:
            raise NotYourVoice(
                f"`{name}` is someone else's personal voice. Pick one of yours or the server's: /voice list"
            )
        preset = await self._preset_voice(guild_id, name)
        if preset is not None:
            return preset
        raise UnknownVoice(f"There is no voice called `{name[:40]}`. See /voice list for the voices you can use.")

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

    async def lock(self, guild_id: int, user_id: int, name: str) -> repo.Voice:
        voice = await self.resolve(guild_id, user_id, name)
        async with self.db.sessions.begin() as s:
            await repo.lock_voice(s, user_id, guild_id, voice.id)
        return voice

    async def unlock(self, guild_id: int, user_id: int) -> bool:
        async with self.db.sessions.begin() as s:
            return await repo.unlock_voice(s, user_id, guild_id)

    # -- adding and removing -----------------------------------------------------------------------------------------

    async def ensure_free(self, guild_id: int, owner_id: int, scope: str, name: str) -> str:
        name = check_name(name)
        async with self.db.sessions() as s:
            if scope == "guild":
                taken = await repo.library_voice(s, guild_id, name) is not None
            else:
                found = await repo.find_voice(s, guild_id, owner_id, name)
                taken = found is not None and found.scope == "personal"
        if taken:
            raise UserError(f"A voice called `{name}` already exists here; choose another name or remove it first.")
        return name

    async def add(self, new: repo.NewVoice, *, lock_for: int | None = None) -> repo.Voice:
        async with self.db.sessions.begin() as s:
            voice = await repo.add_voice(s, new)
            if lock_for is not None:
                await repo.lock_voice(s, lock_for, new.guild_id, voice.id)
        log.info(
            "voice %r (%s, %s) added in guild %s by %s",
            voice.name,
            voice.kind,
            voice.scope,
            voice.guild_id,
            voice.owner_id,
        )
        return voice

    async def remove_library_voice(self, guild_id: int, name: str) -> repo.Voice:
        async with self.db.sessions.begin() as s:
            voice = await repo.library_voice(s, guild_id, name.strip())
            if voice is None:
                raise UnknownVoice(f"This server has no library voice called `{name[:40]}`. See /voice list.")
            await repo.remove_voice(s, voice.id)
        if voice.ref_clip_path:
            Path(voice.ref_clip_path).unlink(missing_ok=True)
        return voice

    def clip_path(self, guild_id: int) -> Path:
        """A fresh, safe file name for a reference or anchor clip."""
        folder = self.settings.data_dir / "voices" / str(int(guild_id))
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{uuid.uuid4().hex}.wav"

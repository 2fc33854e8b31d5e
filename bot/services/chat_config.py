"""Chat narration settings per guild, bound text channels and spoken nicknames: `db.chat` behind small caches.

Every chat message in every guild asks "is this channel bound?", so bindings live in memory (loaded once, changed
only here); settings and nicknames are cached per guild / member (bounded) and replaced on every change made here.
Values are checked with the same rules the reader uses (`bot.chat.rules`, `bot.chat.cleanup`) before they are stored.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cachetools import LRUCache

from bot.chat.cleanup import MAX_MAX_SECONDS, MIN_MAX_SECONDS
from bot.chat.rules import ReadRules, check_template
from bot.chat.spoken import MAX_NAME_CHARS
from bot.errors import UserError
from db import chat as chat_db
from db.engine import Database
from db.errors import InvalidSetting

log = logging.getLogger(__name__)

MAX_CACHED_GUILDS = 10_000
MAX_CACHED_NICKNAMES = 10_000
MAX_BOUND_PER_GUILD = 10  # text channels one guild may have read aloud at once
READ_PREFIX_OFF = "off"  # `/narrate settings read_prefix:off` removes the read prefix


class ChatConfig:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._bound: dict[int, dict[int, chat_db.BoundChannel]] | None = None  # guild -> text channel -> binding
        self._load_lock = asyncio.Lock()
        self._settings: LRUCache[int, chat_db.ChatSettings] = LRUCache(MAX_CACHED_GUILDS)
        self._nicknames: LRUCache[tuple[int, int], str | None] = LRUCache(MAX_CACHED_NICKNAMES)

    # -- bindings ----------------------------------------------------------------------------------------------------

    async def _bindings(self) -> dict[int, dict[int, chat_db.BoundChannel]]:
        if self._bound is None:
            async with self._load_lock:
                if self._bound is None:
                    async with self.db.sessions() as s:
                        rows = await chat_db.all_bound_channels(s)
                    bound: dict[int, dict[int, chat_db.BoundChannel]] = {}
                    for row in rows:
                        bound.setdefault(row.guild_id, {})[row.text_channel_id] = row
                    self._bound = bound
        return self._bound

    async def binding(self, guild_id: int, channel_id: int) -> chat_db.BoundChannel | None:
        return (await self._bindings()).get(guild_id, {}).get(channel_id)

    async def bound_channels(self, guild_id: int) -> list[chat_db.BoundChannel]:
        return list((await self._bindings()).get(guild_id, {}).values())

    async def bind(self, guild_id: int, channel_id: int, voice_channel_id: int | None) -> chat_db.BoundChannel:
        bound = await self._bindings()
        guild = bound.get(guild_id, {})
        if channel_id not in guild and len(guild) >= MAX_BOUND_PER_GUILD:
            raise UserError(
                f"This server already has {MAX_BOUND_PER_GUILD} channels read aloud; stop one with /narrate stop first."
            )
        async with self.db.sessions.begin() as s:
            row = await chat_db.bind_channel(s, guild_id, channel_id, voice_channel_id)
        bound.setdefault(guild_id, {})[channel_id] = row
        log.info("chat channel %s of guild %s bound (voice %s)", channel_id, guild_id, voice_channel_id)
        return row

    async def unbind(self, guild_id: int, channel_id: int | None) -> list[int]:
        """Stop reading `channel_id` (None: every channel of the guild); returns the channels unbound."""
        bound = await self._bindings()
        guild = bound.get(guild_id, {})
        channels = list(guild) if channel_id is None else [c for c in guild if c == channel_id]
        async with self.db.sessions.begin() as s:
            for channel in channels:
                await chat_db.unbind_channel(s, guild_id, channel)
        for channel in channels:
            guild.pop(channel, None)
        if not guild:
            bound.pop(guild_id, None)
        log.info("chat channels %s of guild %s unbound", channels, guild_id)
        return channels

    # -- settings ----------------------------------------------------------------------------------------------------

    async def settings(self, guild_id: int) -> chat_db.ChatSettings:
        found = self._settings.get(guild_id)
        if found is None:
            async with self.db.sessions() as s:
                found = await chat_db.get_chat_settings(s, guild_id)
            self._settings[guild_id] = found
        return found

    async def update(self, guild_id: int, **values: Any) -> chat_db.ChatSettings:
        """Change some settings; a bad value raises UserError with one sentence and nothing is stored."""
        current = await self.settings(guild_id)
        values = {k: v for k, v in values.items() if v is not None}
        if values.get("read_prefix") == READ_PREFIX_OFF:
            values["read_prefix"] = None
        try:
            ReadRules(values.get("skip_prefix", current.skip_prefix), values.get("read_prefix", current.read_prefix))
            if "name_template" in values:
                values["name_template"] = check_template(values["name_template"])
        except ValueError as exc:
            raise UserError(f"That setting cannot be used: {exc}.") from None
        seconds = values.get("max_message_seconds")
        if seconds is not None and not MIN_MAX_SECONDS <= seconds <= MAX_MAX_SECONDS:
            raise UserError(f"The longest message must be {MIN_MAX_SECONDS:g} to {MAX_MAX_SECONDS:g} seconds.")
        try:
            async with self.db.sessions.begin() as s:
                updated = await chat_db.update_chat_settings(s, guild_id, **values)
        except InvalidSetting as exc:
            raise UserError(f"That setting cannot be used: {exc}.") from None
        self._settings[guild_id] = updated
        return updated

    @staticmethod
    def describe(settings: chat_db.ChatSettings, channels: list[chat_db.BoundChannel]) -> str:
        yes = {True: "on", False: "off"}
        read = ", ".join(f"<#{c.text_channel_id}>" for c in channels) or "none (use /narrate start)"
        return "\n".join(
            [
                f"Channels read aloud: {read}",
                f"Join when someone in voice writes (autojoin): {yes[settings.autojoin]}",
                f"Only read authors in my voice channel: {yes[settings.require_author_in_voice]}",
                f"Skip messages starting with: `{settings.skip_prefix}`",
                f"Read only messages starting with: {f'`{settings.read_prefix}`' if settings.read_prefix else 'any'}",
                f"Say the author's name: {yes[settings.announce_names]} (`{settings.name_template}`)",
                f"Longest message: {settings.max_message_seconds} s of speech",
                f"Emotion tags in chat: {yes[settings.emotion_tags_in_chat]}",
            ]
        )

    async def forget_guild(self, guild_id: int) -> None:
        """The bot was removed from the guild: delete its chat settings, bindings, nicknames and dictionary."""
        async with self.db.sessions.begin() as s:
            await chat_db.forget_guild_chat(s, guild_id)
        (await self._bindings()).pop(guild_id, None)
        self._settings.pop(guild_id, None)
        for key in [k for k in self._nicknames if k[0] == guild_id]:
            del self._nicknames[key]
        log.info("chat narration data of guild %s deleted (the bot left it)", guild_id)

    # -- nicknames ---------------------------------------------------------------------------------------------------

    async def nickname(self, guild_id: int, user_id: int) -> str | None:
        key = (guild_id, user_id)
        if key in self._nicknames:  # a cached None is "no nickname", not "not cached"
            return self._nicknames[key]
        async with self.db.sessions() as s:
            found = await chat_db.get_nickname(s, guild_id, user_id)
        self._nicknames[key] = found
        return found

    async def set_nickname(self, guild_id: int, user_id: int, nickname: str | None) -> str | None:
        """The name said before your messages (None: your display name again)."""
        async with self.db.sessions.begin() as s:
            if nickname is None or not nickname.strip():
                await chat_db.clear_nickname(s, guild_id, user_id)
                stored = None
            else:
                nickname = " ".join(nickname.split())
                if len(nickname) > MAX_NAME_CHARS:
                    raise UserError(f"A spoken name is at most {MAX_NAME_CHARS} characters; yours has {len(nickname)}.")
                try:
                    stored = await chat_db.set_nickname(s, guild_id, user_id, nickname)
                except InvalidSetting as exc:
                    raise UserError(f"That name cannot be used: {exc}.") from None
        self._nicknames[(guild_id, user_id)] = stored
        return stored

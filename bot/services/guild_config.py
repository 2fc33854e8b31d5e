"""Per-guild settings (/settings): read with process defaults filled in, change with validation."""

from __future__ import annotations

from bot.errors import UserError
from bot.settings import Settings
from db import repo
from db.engine import Database

MIN_SCRIPT_CHARS = 20


class GuildConfig:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def get(self, guild_id: int) -> repo.GuildSettings:
        async with self.db.sessions() as s:
            return await repo.get_guild_settings(s, guild_id)

    def max_script_chars(self, gs: repo.GuildSettings) -> int:
        """The guild may lower the process limit, never raise it."""
        return min(gs.max_script_chars or self.settings.max_script_chars, self.settings.max_script_chars)

    async def update(self, guild_id: int, **values: object) -> repo.GuildSettings:
        chars = values.get("max_script_chars")
        if chars is not None and not MIN_SCRIPT_CHARS <= int(chars) <= self.settings.max_script_chars:
            raise UserError(
                f"The script length limit must be between {MIN_SCRIPT_CHARS} and {self.settings.max_script_chars} "
                f"characters, not {chars}."
            )
        async with self.db.sessions.begin() as s:
            return await repo.update_guild_settings(s, guild_id, **values)

    def describe(self, gs: repo.GuildSettings) -> str:
        role = f"<@&{gs.required_role_id}>" if gs.required_role_id else "anyone"
        moderators = "Manage Server / Move Members" + (f", or <@&{gs.manage_role_id}>" if gs.manage_role_id else "")
        return "\n".join(
            [
                f"Max script length: {self.max_script_chars(gs)} characters",
                f"Who may use /say and design or clone voices: {role}",
                f"Who may stop or skip others' renders, move me or make me leave: {moderators}",
                f"Default voice: {gs.default_voice or 'the model default'}",
                f"Leave when alone: {'yes' if gs.auto_leave else 'no'}",
            ]
        )

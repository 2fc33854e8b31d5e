"""/dictionary add|remove|list|import|export: pronunciation rules, yours or (with `server:true` and Manage Server)
the server's. Glue over `bot.services.pronunciation`."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import BadAttachment, NotAllowed
from bot.services.progress import NO_MENTIONS

if TYPE_CHECKING:
    from bot.client import NarratorBot

MAX_FILE_BYTES = 128 * 1024  # the importer's own limit; refused before downloading anything bigger
SERVER = "Edit the server's dictionary instead of yours (needs Manage Server)"


@app_commands.guild_only()
class DictionaryCog(commands.GroupCog, group_name="dictionary", group_description="How words are pronounced"):
    def __init__(self, bot: NarratorBot) -> None:
        self.bot: NarratorBot = bot
        super().__init__()

    @property
    def rules(self):
        return self.bot.services.dictionary

    @staticmethod
    def _owner(interaction: discord.Interaction, server: bool, *, changing: bool) -> int | None:
        if not server:
            return interaction.user.id
        if changing and not interaction.permissions.manage_guild:
            raise NotAllowed("You need the Manage Server permission to change the server's dictionary.")
        return None

    @staticmethod
    async def _say(interaction: discord.Interaction, text: str, file: discord.File | None = None) -> None:
        extra = {"file": file} if file is not None else {}
        await interaction.response.send_message(text[:1990], ephemeral=True, allowed_mentions=NO_MENTIONS, **extra)

    @app_commands.command(name="add")
    @app_commands.describe(
        pattern="The word or phrase to replace (whole words, any case), or a regular expression",
        replacement="What to say instead",
        regex="Treat the pattern as a regular expression (RE2 syntax)",
        server=SERVER,
    )
    async def add(self, interaction: discord.Interaction, pattern: str, replacement: str, regex: bool = False,
                  server: bool = False) -> None:  # fmt: skip
        """Add a pronunciation rule (the same pattern again changes its replacement)."""
        owner = self._owner(interaction, server, changing=True)
        rule = await self.rules.add(interaction.guild_id, owner, pattern, replacement, regex)
        await self._say(interaction, f"Added: `{rule.pattern}` → {rule.replacement or '(nothing)'}.")

    @app_commands.command(name="remove")
    @app_commands.describe(pattern="The pattern of the rule to remove, as listed", server=SERVER)
    async def remove(self, interaction: discord.Interaction, pattern: str, server: bool = False) -> None:
        """Remove a pronunciation rule."""
        owner = self._owner(interaction, server, changing=True)
        await self.rules.remove(interaction.guild_id, owner, pattern)
        await self._say(interaction, f"Removed the rule for `{pattern.strip()[:100]}`.")

    @app_commands.command(name="list")
    @app_commands.describe(server="Show the server's dictionary instead of yours")
    async def list_rules(self, interaction: discord.Interaction, server: bool = False) -> None:
        """Show pronunciation rules."""
        owner = self._owner(interaction, server, changing=False)
        rules = await self.rules.list(interaction.guild_id, owner)
        await self._say(interaction, self.rules.describe(rules, owner))

    @app_commands.command(name="export")
    @app_commands.describe(server="Export the server's dictionary instead of yours")
    async def export(self, interaction: discord.Interaction, server: bool = False) -> None:
        """Download pronunciation rules as a JSON file (to edit, back up or import elsewhere)."""
        owner = self._owner(interaction, server, changing=False)
        text = await self.rules.export(interaction.guild_id, owner)
        file = discord.File(io.BytesIO(text.encode()), filename="dictionary.json")
        await self._say(interaction, "Here is the dictionary.", file)

    @app_commands.command(name="import")
    @app_commands.describe(file="A JSON file like the one /dictionary export gives", server=SERVER)
    async def import_rules(self, interaction: discord.Interaction, file: discord.Attachment,
                           server: bool = False) -> None:  # fmt: skip
        """Replace pronunciation rules with those of a JSON file (every problem in it is listed at once)."""
        owner = self._owner(interaction, server, changing=True)
        if file.size > MAX_FILE_BYTES:
            raise BadAttachment(f"The file is {file.size // 1024} KiB; the limit is {MAX_FILE_BYTES // 1024} KiB.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        count = await self.rules.import_file(interaction.guild_id, owner, await file.read())
        await interaction.followup.send(f"Imported {count} rule(s).", ephemeral=True, allowed_mentions=NO_MENTIONS)


async def setup(bot: NarratorBot) -> None:
    await bot.add_cog(DictionaryCog(bot))

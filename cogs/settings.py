"""/settings show|max_script|role|manage_role|default_voice|auto_leave: per-server options, for members who can manage
it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.services.progress import NO_MENTIONS

if TYPE_CHECKING:
    from bot.client import NarratorBot


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class SettingsCog(commands.GroupCog, group_name="settings", group_description="Narrator options for this server"):
    def __init__(self, bot: NarratorBot) -> None:
        self.bot: NarratorBot = bot
        super().__init__()

    @property
    def config(self):
        return self.bot.services.guild_config

    async def _reply(self, interaction: discord.Interaction, **changes: object) -> None:
        gs = (
            await self.config.update(interaction.guild_id, **changes)
            if changes
            else await self.config.get(interaction.guild_id)
        )
        await interaction.response.send_message(self.config.describe(gs), ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="show")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def show(self, interaction: discord.Interaction) -> None:
        """Show this server's narrator options."""
        await self._reply(interaction)

    @app_commands.command(name="max_script")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def max_script(self, interaction: discord.Interaction, characters: app_commands.Range[int, 20, 100_000]):
        """Set the longest script /say accepts here."""
        await self._reply(interaction, max_script_chars=characters)

    @app_commands.command(name="role")
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(role="Only members with this role may use /say (leave empty for everyone)")
    async def role(self, interaction: discord.Interaction, role: discord.Role | None = None) -> None:
        """Require a role for /say."""
        await self._reply(interaction, required_role_id=role.id if role else None)

    @app_commands.command(name="manage_role")
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(role="Members with this role may stop or skip anyone's render, move me and make me leave")
    async def manage_role(self, interaction: discord.Interaction, role: discord.Role | None = None) -> None:
        """Let a role moderate narration (besides Manage Server / Move Members)."""
        await self._reply(interaction, manage_role_id=role.id if role else None)

    @app_commands.command(name="default_voice")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def default_voice(self, interaction: discord.Interaction, name: str | None = None) -> None:
        """Set the voice /say uses for members without a locked voice (empty: the model default)."""
        if name:
            name = (
                await self.bot.services.library.library_default(interaction.guild_id, interaction.user.id, name)
            ).name
        await self._reply(interaction, default_voice=name)

    @app_commands.command(name="auto_leave")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def auto_leave(self, interaction: discord.Interaction, enabled: bool) -> None:
        """Leave the voice channel when nobody else is left in it."""
        await self._reply(interaction, auto_leave=enabled)


async def setup(bot: NarratorBot) -> None:
    await bot.add_cog(SettingsCog(bot))

"""/voices register|design|remove: the server's voice library, for members who can manage the server.

`default_permissions` only hides the group from others by default (server admins may change that), so every
command also checks `has_permissions` locally.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.services.progress import NO_MENTIONS
from cogs.voice import describe_voice

if TYPE_CHECKING:
    from bot.client import NarratorBot

log = logging.getLogger(__name__)


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class VoicesCog(commands.GroupCog, group_name="voices", group_description="Manage the server's voice library"):
    def __init__(self, bot: NarratorBot) -> None:
        self.bot: NarratorBot = bot
        super().__init__()

    @app_commands.command(name="register")
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(
        name="Library name for the voice",
        sample="A clean recording of the speaker (WAV/FLAC/OGG, a few seconds)",
        transcript="The exact words spoken in the sample",
        consent="I confirm the speaker agreed to have their voice cloned",
    )
    async def register(
        self, interaction: discord.Interaction, name: str, sample: discord.Attachment, transcript: str, consent: bool
    ) -> None:
        """Clone a voice from a reference clip into the server library."""
        identities = self.bot.services.creation
        identities.check_upload(sample.size, sample.filename)
        await interaction.response.defer(ephemeral=True, thinking=True)
        data = await sample.read()
        voice = await identities.clone(
            interaction.guild_id, interaction.user.id, name, data, sample.filename, transcript, consent
        )
        await interaction.followup.send(
            f"Registered {describe_voice(voice)}.", ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    @app_commands.command(name="design")
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(name="Library name for the voice", description="e.g. an old storyteller, raspy and warm")
    async def design(self, interaction: discord.Interaction, name: str, description: str) -> None:
        """Design a library voice from a description."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        voice = await self.bot.services.creation.design(
            interaction.guild_id, interaction.user.id, name, description, personal=False
        )
        await interaction.followup.send(
            f"Designed {describe_voice(voice)}.", ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    @app_commands.command(name="remove")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def remove(self, interaction: discord.Interaction, name: str) -> None:
        """Remove a voice from the server library (locks on it are released)."""
        voice = await self.bot.services.library.remove_library_voice(interaction.guild_id, name)
        await interaction.response.send_message(
            f"Removed **{voice.name}**.", ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    @remove.autocomplete("name")
    async def remove_autocomplete(self, interaction: discord.Interaction, current: str):
        voices = await self.bot.services.library.list(interaction.guild_id, interaction.user.id)
        names = [v.name for v in voices if v.scope == "guild" and current.lower() in v.name.lower()]
        return [app_commands.Choice(name=n, value=n) for n in names[:25]]


async def setup(bot: NarratorBot) -> None:
    await bot.add_cog(VoicesCog(bot))

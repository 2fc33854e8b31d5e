"""/voice lock|unlock|show|list|design: a member's own voice identity (glue over `bot.services.library` / `bot.services.creation`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.services.progress import NO_MENTIONS

if TYPE_CHECKING:
    from bot.client import NarratorBot
    from bot.services.library import Voice

log = logging.getLogger(__name__)

KIND_LABELS = {"preset": "preset speaker", "designed": "designed", "cloned": "cloned", "finetuned": "fine-tuned"}


def describe_voice(voice: Voice) -> str:
    owner = "personal" if voice.scope == "personal" else "server library"
    extra = f" – {voice.description[:80]}" if voice.description else ""
    return f"**{voice.name}** ({KIND_LABELS.get(voice.kind, voice.kind)}, {owner}){extra}"


class VoiceCog(commands.GroupCog, group_name="voice", group_description="Your narration voice"):
    def __init__(self, bot: NarratorBot) -> None:
        self.bot: NarratorBot = bot
        super().__init__()

    @property
    def voices(self):
        return self.bot.services.library

    async def _names(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        names = await self.voices.names_starting(interaction.guild_id, interaction.user.id, current)
        return [app_commands.Choice(name=n, value=n) for n in names]

    @app_commands.command(name="lock")
    @app_commands.guild_only()
    @app_commands.describe(name="The voice every /say of yours will use")
    async def lock(self, interaction: discord.Interaction, name: str) -> None:
        """Lock your narration to one voice identity."""
        voice = await self.voices.lock(interaction.guild_id, interaction.user.id, name)
        await interaction.response.send_message(
            f"Locked: your narrations now use {describe_voice(voice)}.", ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    @lock.autocomplete("name")
    async def lock_autocomplete(self, interaction: discord.Interaction, current: str):
        return await self._names(interaction, current)

    @app_commands.command(name="unlock")
    @app_commands.guild_only()
    async def unlock(self, interaction: discord.Interaction) -> None:
        """Go back to the server's default voice."""
        removed = await self.voices.unlock(interaction.guild_id, interaction.user.id)
        text = "Unlocked: /say uses the server default again." if removed else "You had no locked voice."
        await interaction.response.send_message(text, ephemeral=True)

    @app_commands.command(name="show")
    @app_commands.guild_only()
    async def show(self, interaction: discord.Interaction) -> None:
        """Show the voice your narrations use."""
        voice = await self.voices.locked(interaction.guild_id, interaction.user.id)
        text = f"Your locked voice: {describe_voice(voice)}" if voice else "No locked voice: /say uses the default."
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="list")
    @app_commands.guild_only()
    async def list_voices(self, interaction: discord.Interaction) -> None:
        """List the voices you can use here."""
        voices = await self.voices.list(interaction.guild_id, interaction.user.id)
        text = "\n".join(describe_voice(v) for v in voices) or "No voices yet: try /voice design."
        await interaction.response.send_message(text[:1990], ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="design")
    @app_commands.guild_only()
    @app_commands.describe(description="e.g. a warm, low male voice, calm and slow", name="Name for it (default: mine)")
    async def design(self, interaction: discord.Interaction, description: str, name: str | None = None) -> None:
        """Design a personal voice from a description; it is locked for you at once."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        voice = await self.bot.services.creation.design(
            interaction.guild_id, interaction.user.id, name or "mine", description, personal=True
        )
        await interaction.followup.send(
            f"Designed and locked {describe_voice(voice)}.", ephemeral=True, allowed_mentions=NO_MENTIONS
        )


async def setup(bot: NarratorBot) -> None:
    await bot.add_cog(VoiceCog(bot))

"""/voice lock|unlock|show|list|design|delete: a member's own voice identity; /voice consent|mine|revoke: voices cloned
from you (glue over `bot.services.library`, `bot.services.creation` and `bot.services.consent`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.services.consent import describe_restriction
from bot.services.permissions import Caller
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
        caller = Caller.of(interaction)
        voice = await self.voices.lock(interaction.guild_id, caller.user_id, name, caller.role_ids)
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
        await self.bot.services.permissions.check_gpu_role(
            interaction.guild_id, Caller.of(interaction), "/voice design"
        )
        await self.voices.check_personal_room(interaction.user.id)  # before any GPU work
        await interaction.response.defer(ephemeral=True, thinking=True)
        voice = await self.bot.services.creation.design(
            interaction.guild_id, interaction.user.id, name or "mine", description, personal=True
        )
        await interaction.followup.send(
            f"Designed and locked {describe_voice(voice)}.", ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    @app_commands.command(name="delete")
    @app_commands.describe(name="One of your personal voices")
    async def delete(self, interaction: discord.Interaction, name: str) -> None:
        """Delete one of your personal voices (its recording too)."""
        removed = await self.voices.remove_personal_voice(interaction.user.id, name)
        await interaction.response.send_message(
            f"Deleted your voice **{removed.name}**.", ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    @delete.autocomplete("name")
    async def delete_autocomplete(self, interaction: discord.Interaction, current: str):
        voices = await self.voices.personal_voices(interaction.user.id)
        return [app_commands.Choice(name=v.name, value=v.name) for v in voices if current.lower() in v.name.lower()][
            :25
        ]

    # -- voices cloned from you --------------------------------------------------------------------------------------

    @app_commands.command(name="consent")
    @app_commands.describe(name="The voice cloned from you that you agree to")
    async def consent(self, interaction: discord.Interaction, name: str) -> None:
        """Agree to a voice cloned from your recording, so the server can use it."""
        voice = await self.bot.services.consent.confirm(interaction.guild_id, interaction.user.id, name)
        await interaction.response.send_message(
            f"Thank you: **{voice.name}** can now be used ({describe_restriction(voice)}). You can withdraw it at "
            f"any time with `/voice revoke name:{voice.name}`.",
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    @app_commands.command(name="mine")
    async def mine(self, interaction: discord.Interaction) -> None:
        """List every voice cloned from you, in every server."""
        voices = await self.bot.services.consent.mine(interaction.user.id)
        lines = [self._mine_line(v) for v in voices]
        text = "\n".join(lines) if lines else "No voice has been cloned from you."
        await interaction.response.send_message(text[:1990], ephemeral=True, allowed_mentions=NO_MENTIONS)

    def _mine_line(self, voice: Voice) -> str:
        guild = self.bot.get_guild(voice.guild_id)
        where = guild.name if guild is not None else f"server {voice.guild_id}"
        if voice.usable:
            when = voice.consented_at.strftime("%Y-%m-%d") if voice.consented_at else "?"
            state = f"you agreed on {when}; {describe_restriction(voice)}"
        else:
            state = "waiting for your consent (`/voice consent`)"
        return f"**{voice.name}** in {where}: {state}"

    @app_commands.command(name="revoke")
    @app_commands.describe(name="A voice cloned from you (see /voice mine)")
    async def revoke(self, interaction: discord.Interaction, name: str) -> None:
        """Withdraw a voice cloned from you: it is deleted with its recording, wherever it was registered."""
        removed = await self.bot.services.consent.revoke(interaction.guild_id, interaction.user.id, name)
        await interaction.response.send_message(
            f"Deleted **{removed[0].name}** ({len(removed)} server(s)) and its recording. Nobody can use it any more.",
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )


async def setup(bot: NarratorBot) -> None:
    await bot.add_cog(VoiceCog(bot))

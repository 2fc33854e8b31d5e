"""/say, /stop, /skip, /queue, /join, /leave: glue between slash commands and `bot.services.say` / `bot.voice.connections`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.services.acting import acting_roles
from bot.services.permissions import Caller
from bot.services.progress import NO_MENTIONS, InteractionReporter

if TYPE_CHECKING:
    from bot.client import NarratorBot

log = logging.getLogger(__name__)

VoiceLike = discord.VoiceChannel | discord.StageChannel


class Say(commands.Cog):
    def __init__(self, bot: NarratorBot) -> None:
        self.bot: NarratorBot = bot

    @property
    def services(self):
        return self.bot.services

    @app_commands.command(name="say")
    @app_commands.guild_only()
    @app_commands.describe(
        script="What to say, e.g. [Whispering] Hello there. [Pause 1s] [Excited] Welcome!",
        voice="A voice from /voice list (default: your locked voice)",
        channel="Voice channel to speak in (default: the one you are in)",
    )
    async def say(
        self, interaction: discord.Interaction, script: str, voice: str | None = None, channel: VoiceLike | None = None
    ) -> None:
        """Narrate a script with emotion tags in your voice channel and post the recording."""
        member = interaction.user
        target = channel or self.services.playback.caller_channel(member)
        caller = await self._may_send_bot(interaction, target)
        self.services.retention.check_free_space()
        with acting_roles(caller.role_ids):  # voices restricted to a role are checked against the caller's
            request = await self.services.say.prepare(
                interaction.guild_id, interaction.channel_id, member.id, set(caller.role_ids), script, voice
            )
        await interaction.response.defer(thinking=True)
        await self.services.say.submit(request, target, InteractionReporter(interaction))

    async def _may_send_bot(self, interaction: discord.Interaction, target: VoiceLike) -> Caller:
        """The caller may speak in `target` themselves, and may move the bot there if others listen elsewhere."""
        caller = Caller.of(interaction)
        permissions = self.services.permissions
        permissions.check_channel_access(interaction.user, target)
        await permissions.check_move(interaction.guild, caller, target)
        return caller

    @say.autocomplete("voice")
    async def say_voice_autocomplete(self, interaction: discord.Interaction, current: str):
        names = await self.services.library.names_starting(interaction.guild_id, interaction.user.id, current)
        return [app_commands.Choice(name=n, value=n) for n in names]

    @app_commands.command(name="stop")
    @app_commands.guild_only()
    async def stop(self, interaction: discord.Interaction) -> None:
        """Stop your renders (moderators: every render in this server)."""
        result = await self.services.permissions.stop(interaction.guild_id, Caller.of(interaction))
        if result.everyone:
            text = f"Stopped. {result.cancelled} render(s) cancelled." if result.cancelled else "Stopped."
        else:
            text = f"Stopped your {result.cancelled} render(s)." if result.cancelled else "You have no render to stop."
        await interaction.response.send_message(text, ephemeral=not result.everyone, allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="skip")
    @app_commands.guild_only()
    async def skip(self, interaction: discord.Interaction) -> None:
        """Skip the narration playing now (yours; moderators: anyone's); the next one in the queue starts."""
        skipped = await self.services.permissions.skip(interaction.guild_id, Caller.of(interaction))
        await interaction.response.send_message("Skipped." if skipped else "Nothing is playing.", ephemeral=not skipped)

    @app_commands.command(name="queue")
    @app_commands.guild_only()
    async def queue(self, interaction: discord.Interaction) -> None:
        """Show the renders running and waiting in this server."""
        text = self.services.say.queue_text(interaction.guild_id)  # fits one message
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="join")
    @app_commands.guild_only()
    async def join(self, interaction: discord.Interaction, channel: VoiceLike | None = None) -> None:
        """Join your voice channel (or the one given)."""
        target = channel or self.services.playback.caller_channel(interaction.user)
        await self._may_send_bot(interaction, target)
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.services.playback.connect(target)
        await interaction.followup.send(f"Joined {target.mention}.", ephemeral=True)

    @app_commands.command(name="leave")
    @app_commands.guild_only()
    async def leave(self, interaction: discord.Interaction) -> None:
        """Stop and leave the voice channel (moderators)."""
        await self.services.permissions.check_leave(interaction.guild, Caller.of(interaction))
        self.services.say.stop(interaction.guild_id)
        left = await self.services.playback.leave(interaction.guild)
        await interaction.response.send_message(
            "Left the voice channel." if left else "I am not in a voice channel.", ephemeral=not left
        )

    @commands.Cog.listener()
    async def on_voice_state_update(self, member: discord.Member, before: discord.VoiceState, after) -> None:
        guild = member.guild
        if member.bot or before.channel is None or guild.voice_client is None:
            return
        if before.channel.id != guild.voice_client.channel.id or not self.services.playback.is_alone(guild):
            return
        if await self.services.say.auto_leave_enabled(guild.id):
            log.info("Alone in %s (guild %s): leaving", before.channel.id, guild.id)
            self.services.say.stop(guild.id)
            await self.services.playback.leave(guild)

    async def cog_unload(self) -> None:
        await self.services.playback.leave_all()


async def setup(bot: NarratorBot) -> None:
    await bot.add_cog(Say(bot))

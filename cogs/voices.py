"""/voices register|design|remove|restrict: the server's voice library, for members who can manage the server; the
Confirm / Decline buttons a speaker presses on the request to consent to a voice cloned from them.

`default_permissions` only hides the group from others by default (server admins may change that), so every
command also checks `has_permissions` locally.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import UserError
from bot.services.consent import describe_restriction, request_text
from bot.services.permissions import Caller
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
        speaker="Whose voice this is (default: yours); they must confirm before anyone can use it",
    )
    async def register(
        self,
        interaction: discord.Interaction,
        name: str,
        sample: discord.Attachment,
        transcript: str,
        consent: bool,
        speaker: discord.Member | None = None,
    ) -> None:
        """Clone a voice from a reference clip into the server library."""
        identities = self.bot.services.creation
        await self.bot.services.permissions.check_gpu_role(
            interaction.guild_id, Caller.of(interaction), "/voices register"
        )
        if speaker is not None and speaker.bot:
            raise UserError("A bot cannot be the speaker of a cloned voice; name the person whose voice it is.")
        identities.check_upload(sample.size, sample.filename)
        await interaction.response.defer(ephemeral=True, thinking=True)
        data = await sample.read()
        voice = await identities.clone(
            interaction.guild_id,
            interaction.user.id,
            name,
            data,
            sample.filename,
            transcript,
            consent,
            speaker_id=speaker.id if speaker is not None else None,
        )
        if voice.usable:
            text = f"Registered {describe_voice(voice)}."
        else:
            text = (
                f"Registered {describe_voice(voice)}. Nobody can use it until <@{voice.speaker_user_id}> agrees; "
                "I have asked them in this channel."
            )
            await self._ask_speaker(interaction, voice)
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    async def _ask_speaker(self, interaction: discord.Interaction, voice) -> None:
        """Post the consent request where the registration happened, pinging only the speaker."""
        view = discord.ui.View(timeout=None)
        view.add_item(ConsentButton("yes", voice.id))
        view.add_item(ConsentButton("no", voice.id))
        mention = discord.AllowedMentions(users=[discord.Object(voice.speaker_user_id)])
        try:
            await interaction.channel.send(
                request_text(voice, interaction.user.id), view=view, allowed_mentions=mention
            )
        except discord.HTTPException as exc:  # the command still worked: the speaker can use /voice consent
            log.warning("could not post the consent request for voice %s: %s", voice.id, exc)

    @app_commands.command(name="design")
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(name="Library name for the voice", description="e.g. an old storyteller, raspy and warm")
    async def design(self, interaction: discord.Interaction, name: str, description: str) -> None:
        """Design a library voice from a description."""
        await self.bot.services.permissions.check_gpu_role(
            interaction.guild_id, Caller.of(interaction), "/voices design"
        )
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

    @app_commands.command(name="restrict")
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(
        name="A cloned library voice",
        role="Only members with this role may use it (empty: everyone)",
        speaker_only="Only the person it was cloned from may use it",
    )
    async def restrict(
        self, interaction: discord.Interaction, name: str, role: discord.Role | None = None, speaker_only: bool = False
    ) -> None:
        """Restrict who may use a cloned voice here."""
        voice = await self.bot.services.consent.restrict(
            interaction.guild_id, name, role_id=role.id if role else None, speaker_only=speaker_only
        )
        await interaction.response.send_message(
            f"**{voice.name}**: {describe_restriction(voice)}.", ephemeral=True, allowed_mentions=NO_MENTIONS
        )


class ConsentButton(
    discord.ui.DynamicItem[discord.ui.Button], template=r"narrator:consent:(?P<action>yes|no):(?P<voice>[0-9]+)"
):
    """Confirm / Decline on a consent request; works after a restart (the voice id is in the custom id)."""

    def __init__(self, action: str, voice_id: int) -> None:
        label, style = (
            ("Confirm", discord.ButtonStyle.success) if action == "yes" else ("Decline", discord.ButtonStyle.danger)
        )
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=f"narrator:consent:{action}:{voice_id}"))
        self.action, self.voice_id = action, voice_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button, match) -> ConsentButton:
        return cls(match["action"], int(match["voice"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        consent = interaction.client.services.consent
        try:
            if self.action == "yes":
                voice = await consent.confirm_id(self.voice_id, interaction.user.id)
                text = f"Thank you: **{voice.name}** can now be used. Withdraw it any time with `/voice revoke`."
            else:
                removed = await consent.revoke_id(self.voice_id, interaction.user.id)
                text = f"Declined: **{removed.name}** and its recording are deleted."
        except UserError as exc:
            text = str(exc)
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)


async def setup(bot: NarratorBot) -> None:
    bot.add_dynamic_items(ConsentButton)
    await bot.add_cog(VoicesCog(bot))

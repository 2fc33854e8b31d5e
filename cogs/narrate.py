"""/narrate start|stop|status|settings|nick and the message events of chat narration: glue between Discord and
`bot.services.chat` / `bot.services.chat_config`.

Binding, unbinding and settings need Manage Server, checked locally (`default_permissions` cannot be set per
subcommand, and only hides commands anyway); `status` and `nick` are for everyone.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.message import Attachment, ChatMessage
from bot.services.progress import NO_MENTIONS

if TYPE_CHECKING:
    from bot.client import NarratorBot

log = logging.getLogger(__name__)

ENABLE_CONTENT_INTENT = (
    "I cannot read chat messages: Discord has not granted me the **Message Content** intent. The bot's owner can "
    "enable it in the Discord developer portal (https://discord.com/developers/applications → this application → "
    "Bot → Privileged Gateway Intents → Message Content Intent), then restart me. Slash commands work meanwhile."
)


def chat_message(message: discord.Message) -> ChatMessage:
    """The plain values `bot.chat` reads of a Discord message."""
    author = message.author
    return ChatMessage(
        content=message.content,
        author_id=author.id,
        author_name=getattr(author, "display_name", author.name),
        author_is_bot=author.bot,
        is_webhook=message.webhook_id is not None,
        flags=message.flags.value,
        type=message.type.value,
        attachments=tuple(Attachment(a.filename, a.content_type) for a in message.attachments),
        id=message.id,
        guild_id=message.guild.id if message.guild else 0,
        channel_id=message.channel.id,
    )


class GuildNames:
    """A `bot.chat.message.Resolver` over the guild cache (and the members a message mentions, which come with it)."""

    def __init__(self, guild: discord.Guild, mentioned: list[discord.abc.User] = ()) -> None:
        self.guild = guild
        self.mentioned = {m.id: getattr(m, "display_name", m.name) for m in mentioned}

    def user(self, user_id: int) -> str | None:
        if user_id in self.mentioned:
            return self.mentioned[user_id]
        member = self.guild.get_member(user_id)
        return member.display_name if member else None

    def role(self, role_id: int) -> str | None:
        role = self.guild.get_role(role_id)
        return role.name if role else None

    def channel(self, channel_id: int) -> str | None:
        channel = self.guild.get_channel_or_thread(channel_id)
        return channel.name if channel else None


def author_voice(message: discord.Message):
    voice = getattr(message.author, "voice", None)
    return voice.channel if voice is not None else None


class NarrateCog(commands.GroupCog, group_name="narrate", group_description="Read a text channel aloud"):
    def __init__(self, bot: NarratorBot) -> None:
        self.bot: NarratorBot = bot
        super().__init__()

    @property
    def chat(self):
        return self.bot.services.chat

    @property
    def config(self):
        return self.bot.services.chat_config

    async def _private(self, interaction: discord.Interaction, text: str) -> None:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    # -- commands ----------------------------------------------------------------------------------------------------

    @app_commands.command(name="start")
    @app_commands.guild_only()
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(channel="The text channel to read aloud (default: this one)")
    async def start(self, interaction: discord.Interaction, channel: discord.TextChannel | None = None) -> None:
        """Read a text channel aloud in your voice channel, each member in their own voice."""
        if not self.bot.reads_messages:
            await self._private(interaction, ENABLE_CONTENT_INTENT)
            return
        text = channel or interaction.channel
        voice = self.bot.services.playback.caller_channel(interaction.user)
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.bot.services.playback.connect(voice)
        await self.config.bind(interaction.guild_id, text.id, voice.id)
        settings = await self.config.settings(interaction.guild_id)
        await self._private(
            interaction,
            f"Reading {text.mention} aloud in {voice.mention}. Messages starting with `{settings.skip_prefix}` are "
            "skipped; /narrate stop ends it, /narrate settings changes how.",
        )

    @app_commands.command(name="stop")
    @app_commands.guild_only()
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(channel="The channel to stop reading (default: this one, or all if this one is not read)")
    async def stop(self, interaction: discord.Interaction, channel: discord.TextChannel | None = None) -> None:
        """Stop reading a text channel aloud."""
        guild_id = interaction.guild_id
        target = channel or interaction.channel
        bound = await self.config.binding(guild_id, target.id)
        unbound = await self.config.unbind(guild_id, target.id if bound or channel else None)
        if not await self.config.bound_channels(guild_id):
            self.chat.clear(guild_id)
        if not unbound:
            await self._private(interaction, "No channel here is read aloud.")
            return
        await self._private(interaction, "Stopped reading " + ", ".join(f"<#{c}>" for c in unbound) + ".")

    @app_commands.command(name="status")
    @app_commands.guild_only()
    async def status(self, interaction: discord.Interaction) -> None:
        """Show which channels are read aloud here, and how."""
        guild_id = interaction.guild_id
        settings = await self.config.settings(guild_id)
        lines = [self.config.describe(settings, await self.config.bound_channels(guild_id))]
        lines.append(f"Messages waiting to be read: {self.chat.waiting(guild_id)}")
        if not self.bot.reads_messages:
            lines.append(ENABLE_CONTENT_INTENT)
        await self._private(interaction, "\n".join(lines))

    @app_commands.command(name="settings")
    @app_commands.guild_only()
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(
        autojoin="Join a member's voice channel when they write in a read channel",
        require_voice="Read only members who are in my voice channel",
        skip_prefix="Messages starting with this are not read (default !)",
        read_prefix="If set, only messages starting with this are read; `off` removes it",
        announce_names="Say who wrote a message before it",
        name_template="How a name is said, with {name}, e.g. {name} said",
        max_seconds="The longest message, in seconds of speech (5 to 120)",
        emotion_tags="Honour emotion tags like [Excited] in chat",
    )
    async def settings(
        self,
        interaction: discord.Interaction,
        autojoin: bool | None = None,
        require_voice: bool | None = None,
        skip_prefix: str | None = None,
        read_prefix: str | None = None,
        announce_names: bool | None = None,
        name_template: str | None = None,
        max_seconds: app_commands.Range[int, 5, 120] | None = None,
        emotion_tags: bool | None = None,
    ) -> None:
        """Show or change how chat is read aloud here."""
        updated = await self.config.update(
            interaction.guild_id,
            autojoin=autojoin,
            require_author_in_voice=require_voice,
            skip_prefix=skip_prefix,
            read_prefix=read_prefix,
            announce_names=announce_names,
            name_template=name_template,
            max_message_seconds=max_seconds,
            emotion_tags_in_chat=emotion_tags,
        )
        channels = await self.config.bound_channels(interaction.guild_id)
        await self._private(interaction, self.config.describe(updated, channels))

    @app_commands.command(name="nick")
    @app_commands.guild_only()
    @app_commands.describe(name="The name said before your messages (leave empty for your display name)")
    async def nick(self, interaction: discord.Interaction, name: str | None = None) -> None:
        """Set the name I say before your messages."""
        stored = await self.config.set_nickname(interaction.guild_id, interaction.user.id, name)
        text = f"I will call you **{stored}**." if stored else "I will use your display name again."
        await self._private(interaction, text)

    # -- message events ----------------------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.guild is None or message.author.id == getattr(self.bot.user, "id", None):
            return
        await self.chat.on_message(
            chat_message(message), GuildNames(message.guild, message.mentions), author_voice(message)
        )

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        message = payload.message
        if message.guild is None or "content" not in payload.data:
            return  # an embed appearing is an edit too, with no new text
        await self.chat.on_edit(chat_message(message), GuildNames(message.guild, message.mentions))

    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        self.chat.clear(guild.id)
        await self.config.forget_guild(guild.id)
        self.bot.services.dictionary.forget_guild(guild.id)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        if payload.guild_id is not None:
            self.chat.on_delete(payload.guild_id, payload.message_id)


async def setup(bot: NarratorBot) -> None:
    await bot.add_cog(NarrateCog(bot))

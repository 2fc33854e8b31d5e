"""`NarratorBot`: the Discord session. The composition root (`bot.app.open_bot`) gives it its services before it logs
in (advanced_startup style); it loads the cogs in `setup_hook`, syncs slash commands to the dev guild only, and maps
every app-command error in one place."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import UserError
from bot.invite import invite_url

if TYPE_CHECKING:
    from bot.services import Services
    from bot.settings import Settings

log = logging.getLogger(__name__)

INITIAL_EXTENSIONS = (
    "cogs.say",
    "cogs.voice",
    "cogs.voices",
    "cogs.settings",
    "cogs.admin",
    "cogs.narrate",
    "cogs.dictionary",
)

BACKGROUND_STOP_S = 5.0
SORRY = "Sorry, something went wrong on my side. It has been logged; please try again in a moment."


def user_message(error: app_commands.AppCommandError) -> str | None:
    """The ephemeral text for an error the user can act on, or None for an unexpected one."""
    original = getattr(error, "original", error)
    if isinstance(original, UserError):
        return str(original)
    if isinstance(error, app_commands.MissingPermissions):
        needed = ", ".join(p.replace("_", " ") for p in error.missing_permissions)
        return f"You need the {needed} permission to use this command."
    if isinstance(error, app_commands.BotMissingPermissions):
        needed = ", ".join(p.replace("_", " ") for p in error.missing_permissions)
        return f"I need the {needed} permission here to do that."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works in a server."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down a little: try again in {error.retry_after:.0f} s."
    if isinstance(error, app_commands.CheckFailure):
        return "You are not allowed to use this command here."
    if isinstance(error, app_commands.TransformerError):
        return f"`{error.value}` is not a valid value for this option."
    return None


class NarratorTree(app_commands.CommandTree):
    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        message = user_message(error)
        command = interaction.command.qualified_name if interaction.command else "?"
        if message is None:
            log.error("unexpected error in /%s", command, exc_info=error)
            message = SORRY
        else:
            # The answer may quote the user's own text (a script excerpt, a name): only at DEBUG.
            original = getattr(error, "original", error)
            log.info("/%s refused for user %s (%s)", command, interaction.user.id, type(original).__name__)
            log.debug("/%s refusal text: %s", command, message)
        await reply_privately(interaction, message)


async def reply_privately(interaction: discord.Interaction, message: str) -> None:
    mentions = discord.AllowedMentions.none()
    try:
        if interaction.response.is_done():
            await interaction.followup.send(message, ephemeral=True, allowed_mentions=mentions)
        else:
            await interaction.response.send_message(message, ephemeral=True, allowed_mentions=mentions)
    except discord.HTTPException:
        log.warning("could not send the error message for interaction %s", interaction.id, exc_info=True)


class NarratorBot(commands.Bot):
    """Sharded: NARRATOR_SHARD_COUNT / NARRATOR_SHARD_IDS let several processes each run a range of shards (unset:
    Discord's recommended count, all in this process)."""

    services: Services

    def __init__(self, settings: Settings, *, sync_commands: bool = True, **options: Any) -> None:
        # guilds + voice_states for slash commands and voice; guild messages + the privileged message content for
        # chat narration (if Discord refuses the latter, `connect` goes on without it)
        intents = discord.Intents.default()
        intents.message_content = True
        if settings.shard_count is not None:
            options.setdefault("shard_count", settings.shard_count)
        if settings.shard_ids is not None:
            options.setdefault("shard_ids", list(settings.shard_ids))
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            tree_cls=NarratorTree,
            owner_ids=set(settings.owner_ids) or None,
            help_command=None,
            **options,
        )
        self.settings = settings
        self.sync_commands = sync_commands
        self._background: set[asyncio.Task] = set()
        self.message_content_refused = False  # Discord closed with 4014: the intent is off in the developer portal

    @property
    def reads_messages(self) -> bool:
        """Whether message text reaches the bot (the Message Content intent was granted)."""
        return self.intents.message_content

    async def connect(self, *, reconnect: bool = True) -> None:
        """Connect with the Message Content intent; if Discord refuses it (close 4014, the intent is not enabled for
        this application), connect again without it: slash commands work, chat narration says how to turn it on."""
        try:
            await super().connect(reconnect=reconnect)
        except discord.PrivilegedIntentsRequired:
            if not self.intents.message_content:
                raise
            log.warning(
                "Discord refused the Message Content intent: chat narration cannot read messages. Enable it under "
                "Bot > Privileged Gateway Intents in the developer portal, then restart. Starting without it."
            )
            self.message_content_refused = True
            intents = self.intents
            intents.message_content = False
            self._connection._intents = intents  # what IDENTIFY sends; discord.py has no public setter
            # The sharded client keeps the refused shards and would not IDENTIFY them again: launch them anew.
            getattr(self, "_AutoShardedClient__shards", {}).clear()
            await super().connect(reconnect=reconnect)

    async def setup_hook(self) -> None:
        for extension in INITIAL_EXTENSIONS:
            try:
                await self.load_extension(extension)
            except Exception:
                log.exception("Failed to load extension %s.", extension)
        if self.sync_commands and self.settings.dev_guild_id:
            guild = discord.Object(id=self.settings.dev_guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("Synced %d commands to dev guild %s", len(synced), self.settings.dev_guild_id)
        self.spawn(self._report_interrupted_renders())
        self.spawn(self.services.retention.run_forever())  # cancelled with the other background tasks on close

    def spawn(self, coro) -> asyncio.Task:
        """A background task that is kept alive, logged if it fails, and cancelled on close."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    async def on_command_error(self, context: commands.Context, error: commands.CommandError) -> None:
        """Prefix commands (`@bot word`): an unknown word is not an error worth a traceback, and a refused owner
        command is nobody's business; anything else is logged."""
        if isinstance(error, (commands.CommandNotFound, commands.CheckFailure)):
            log.debug("ignored prefix command from %s: %s", getattr(context.author, "id", "?"), error)
            return
        log.error("prefix command %s failed", context.command, exc_info=error)

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        """Removed from a server (kicked, or the server deleted): its voices and reference clips go, unless the
        operator keeps them (NARRATOR_KEEP_GUILD_DATA)."""
        log.info("removed from guild %s", guild.id)
        self.services.say.stop(guild.id)
        await self.services.consent.forget_guild(guild.id)

    async def on_ready(self) -> None:
        log.info("Ready: %s (ID: %s) in %d guilds", self.user, self.user.id if self.user else "?", len(self.guilds))
        if self.application_id:
            log.info("Invite link: %s", invite_url(self.application_id))

    async def _report_interrupted_renders(self) -> None:
        await self.wait_until_ready()
        await self.services.say.report_interrupted(self)

    async def close(self) -> None:
        log.info("Shutting down: cancelling jobs, leaving voice")
        background = list(self._background)
        for task in background:
            task.cancel()
        if background:  # let them unwind (a retention pass mid-transaction) before the database closes
            await asyncio.wait(background, timeout=BACKGROUND_STOP_S)
        try:
            await self.services.shutdown()
        except Exception:
            log.exception("service shutdown failed")
        await super().close()


class ShardedNarratorBot(NarratorBot, commands.AutoShardedBot):
    """The bot over a range of shards (NARRATOR_SHARD_COUNT / NARRATOR_SHARD_IDS), for deployments of several bot
    processes. discord.py closes a sharded client when Discord refuses an intent (4014), so here the Message Content
    intent cannot be dropped on the fly: enable it in the developer portal for chat narration, or the start fails
    with the portal hint."""

    async def connect(self, *, reconnect: bool = True) -> None:
        await commands.AutoShardedBot.connect(self, reconnect=reconnect)


def bot_for(settings: Settings, **options: Any) -> NarratorBot:
    """A sharded bot when the settings name shards, else the single-connection one."""
    sharded = settings.shard_count is not None or settings.shard_ids is not None
    return (ShardedNarratorBot if sharded else NarratorBot)(settings, **options)

"""Owner-only maintenance: sync slash commands globally or to one guild (never done automatically on start)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

if TYPE_CHECKING:
    from bot.client import NarratorBot

log = logging.getLogger(__name__)


class Admin(commands.Cog):
    def __init__(self, bot: NarratorBot) -> None:
        self.bot: NarratorBot = bot

    async def cog_check(self, ctx: commands.Context) -> bool:
        return await self.bot.is_owner(ctx.author)

    @commands.command(name="sync")
    async def sync(self, ctx: commands.Context, scope: str = "guild") -> None:
        """`@bot sync global` pushes the commands to every server (takes up to an hour); `@bot sync` to this one."""
        if scope == "global":
            synced = await self.bot.tree.sync()
        elif ctx.guild is not None:
            self.bot.tree.copy_global_to(guild=ctx.guild)
            synced = await self.bot.tree.sync(guild=ctx.guild)
        else:
            await ctx.send("Use `sync global` in DMs, or `sync` in a server.")
            return
        log.info("owner %s synced %d commands (%s)", ctx.author.id, len(synced), scope)
        await ctx.send(f"Synced {len(synced)} commands ({scope}).", allowed_mentions=discord.AllowedMentions.none())


async def setup(bot: NarratorBot) -> None:
    await bot.add_cog(Admin(bot))

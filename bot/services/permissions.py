"""Who may do what: stop or skip renders, move the bot, make it leave, use the GPU, speak with a restricted voice.

- A *manager* has Manage Server or Move Members (as Discord resolved them for the interaction) or the guild's
  configured manage role (`/settings manage_role`). Managers may stop and skip anyone's render, move the bot away from
  listeners and make it leave.
- Everyone may stop and skip their own renders (job owners come from the queue and from `SayService.job_owners`).
- The caller needs Connect and Speak in the voice channel they send the bot to (the bot must not be a way around a
  channel's permissions).
- Every command that uses the GPU (/say, /voice design, /voices register, /voices design) obeys the guild's
  required role.

A voice's role restriction is checked by the voice library against the roles in `bot.services.acting`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.errors import NotAllowed

if TYPE_CHECKING:
    from bot.jobs.queue import JobQueue
    from bot.services.guild_config import GuildConfig
    from bot.services.say import SayService
    from bot.voice.connections import Playback

MANAGE_HINT = "Manage Server or Move Members"


def role_ids(member: Any) -> set[int]:
    return {r.id for r in getattr(member, "roles", None) or []}


@dataclass(frozen=True)
class Caller:
    """The member running a command, as the permission checks need them (no Discord object)."""

    user_id: int
    role_ids: frozenset[int]
    manage: bool  # Manage Server or Move Members, as Discord resolved them for this interaction

    @classmethod
    def of(cls, interaction: Any) -> Caller:
        perms = getattr(interaction, "permissions", None)
        manage = bool(perms is not None and (perms.manage_guild or perms.move_members or perms.administrator))
        return cls(interaction.user.id, frozenset(role_ids(interaction.user)), manage)


@dataclass(frozen=True)
class StopResult:
    cancelled: int  # renders cancelled
    everyone: bool  # True: every render of the guild; False: only the caller's


class Permissions:
    def __init__(self, guild_config: GuildConfig, queue: JobQueue, playback: Playback, say: SayService) -> None:
        self.guild_config = guild_config
        self.queue = queue
        self.playback = playback
        self.say = say

    # -- who is a manager --------------------------------------------------------------------------------------------

    async def is_manager(self, guild_id: int, caller: Caller) -> bool:
        if caller.manage:
            return True
        role = (await self.guild_config.get(guild_id)).manage_role_id
        return role is not None and role in caller.role_ids

    async def _manage_refusal(self, guild_id: int, what: str) -> NotAllowed:
        role = (await self.guild_config.get(guild_id)).manage_role_id
        who = f"{MANAGE_HINT} permission or the <@&{role}> role" if role else f"{MANAGE_HINT} permission"
        return NotAllowed(f"{what} needs the {who}.")

    # -- the GPU role gate -------------------------------------------------------------------------------------------

    async def check_gpu_role(self, guild_id: int, caller: Caller, command: str) -> None:
        """The guild's required role covers every command that uses the GPU."""
        required = (await self.guild_config.get(guild_id)).required_role_id
        if required and required not in caller.role_ids:
            raise NotAllowed(f"This server lets only members with the <@&{required}> role use {command}.")

    # -- voice channels ----------------------------------------------------------------------------------------------

    @staticmethod
    def check_channel_access(member: Any, channel: Any) -> None:
        """The caller may only send the bot where they could connect and speak themselves."""
        perms = channel.permissions_for(member)
        if not (perms.connect and perms.speak):
            raise NotAllowed(f"You need the Connect and Speak permissions in {channel.mention} to have me speak there.")

    async def check_move(self, guild: Any, caller: Caller, target: Any) -> None:
        """Moving the bot away from a channel where others listen needs a manager."""
        listeners = self._listeners(guild, caller.user_id)
        current = self._bot_channel(guild)
        if current is None or current.id == target.id or not listeners:
            return
        if not await self.is_manager(guild.id, caller):
            refusal = await self._manage_refusal(
                guild.id, f"Moving me away from {current.mention}, where others listen,"
            )
            raise NotAllowed(f"{refusal} Join {current.mention} instead.")

    async def check_leave(self, guild: Any, caller: Caller) -> None:
        if not await self.is_manager(guild.id, caller):
            raise await self._manage_refusal(guild.id, "Making me leave the voice channel")

    @staticmethod
    def _bot_channel(guild: Any) -> Any | None:
        vc = getattr(guild, "voice_client", None)
        return getattr(vc, "channel", None) if vc is not None else None

    def _listeners(self, guild: Any, except_user: int) -> list[Any]:
        channel = self._bot_channel(guild)
        members = getattr(channel, "members", None) or []
        return [m for m in members if not m.bot and m.id != except_user]

    # -- stop and skip -----------------------------------------------------------------------------------------------

    async def stop(self, guild_id: int, caller: Caller) -> StopResult:
        """A manager stops everything in the guild; anyone else stops only their own renders (running, waiting and
        still playing)."""
        if await self.is_manager(guild_id, caller):
            return StopResult(self.say.stop(guild_id), everyone=True)
        mine = self.queue.cancel_where(lambda j: j.guild_id == guild_id and j.user_id == caller.user_id)
        tag = self.playback.playing_tag(guild_id)
        if tag is not None and self._owner(tag) == caller.user_id:
            self.playback.skip(guild_id, tag)
        for job in mine:
            self.playback.skip(guild_id, job.id)
        return StopResult(len(mine), everyone=False)

    async def skip(self, guild_id: int, caller: Caller) -> bool:
        """Skip what plays now (or renders, if nothing plays yet): anyone's for a manager, else only one's own."""
        tag = self.playback.playing_tag(guild_id)
        running = self.queue.running(guild_id)
        if tag is None and not running:
            return False
        target = tag if tag is not None else running[0].id
        owner = self._owner(target)
        if owner != caller.user_id and not await self.is_manager(guild_id, caller):
            raise await self._manage_refusal(guild_id, "Skipping someone else's narration")
        return self.say.skip(guild_id)

    def _owner(self, job_id: object) -> int | None:
        for job in self.queue.running():
            if job.id == job_id:
                return job.user_id
        return self.say.job_owners.get(job_id)

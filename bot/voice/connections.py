"""Voice connections and the per-guild audio stream.

`Playback` joins the caller's channel (or refuses politely when the caller is in none), keeps ONE long-lived
`PCMStreamSource` per connected guild (its player started by the first audio), and exposes
`expect/feed/begin_segment/end/skip/stop` keyed by job id. When the player ends on its own (the connection
dropped), the source is forgotten; the next `feed` starts a new one if the bot is connected again, and `feed`
returns False meanwhile so the render can tell its user and go on with the master.

Bounds (`VoiceLimits`, from the settings): a render waits in `wait_for_room` while its guild has more than
`max_buffered_s` of audio queued or the process more than `max_buffered_total_s`, so no script (a pause flood)
can queue more audio than that. Idle: once nothing is queued, the player is paused (speaking off, no packets) and
resumed by the next audio; after `idle_leave_s` with nothing queued and no render expected, the bot leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import discord

from bot.errors import NotInVoice, UserError
from bot.voice.source import BYTES_PER_SECOND, PCMStreamSource

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0  # per attempt; real Discord connects in about a second
SETTLE_TIMEOUT_S = 10.0  # how long to let discord.py finish its own reconnect before we start a fresh one
PLAYER_STOP_TIMEOUT_S = 1.0
# A voice client that is not connected may be resuming (close 4015 and the like): its player waits and carries on,
# so audio keeps queueing for this long before the connection counts as lost.
RESUME_GRACE_S = 5.0
ROOM_POLL_S = 0.05  # how often a render held back by backpressure looks again (a frame is 20 ms)


@dataclass(frozen=True)
class VoiceLimits:
    """NARRATOR_MAX_BUFFERED_SECONDS, NARRATOR_MAX_BUFFERED_SECONDS_TOTAL, NARRATOR_VOICE_IDLE_LEAVE_S, read from
    the settings (bot/settings.py holds their defaults and ranges)."""

    max_buffered_s: float
    max_buffered_total_s: float
    idle_leave_s: float  # 0: never leave for being idle

    @classmethod
    def of(cls, settings) -> VoiceLimits:
        guild = settings.max_buffered_seconds
        # the process bound is never below one guild's (a lower one would only make it the per-guild bound)
        return cls(guild, max(guild, settings.max_buffered_seconds_total), settings.voice_idle_leave_s)


class Playback:
    def __init__(self, client: discord.Client, limits: VoiceLimits, *, prebuffer_s: float = 0.2) -> None:
        self.client = client
        self.prebuffer_s = prebuffer_s
        self.limits = limits
        # Called (on the loop) with a guild and the tags whose queued audio was never played when its player ended
        # (the bot was kicked or the connection dropped for good): the render service tells their owners.
        self.on_unheard: Callable[[int, list[object]], None] | None = None
        self._expected: dict[int, set[object]] = {}  # guild -> tags of renders that will feed it (queued, running)
        self._idle_timers: dict[int, asyncio.TimerHandle] = {}
        self._leaving: set[asyncio.Task] = set()
        self._sources: dict[int, PCMStreamSource] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._played: weakref.WeakSet[PCMStreamSource] = weakref.WeakSet()  # sources handed to a player once
        self._ended: dict[PCMStreamSource, asyncio.Event] = {}  # set when that source's player has stopped
        self._unconnected_since: dict[int, float] = {}  # guild -> when its voice client was first seen unconnected

    # -- connecting --------------------------------------------------------------------------------------------------

    @staticmethod
    def caller_channel(member: discord.abc.User) -> discord.VoiceChannel | discord.StageChannel:
        voice = getattr(member, "voice", None)
        if voice is None or voice.channel is None:
            raise NotInVoice("Join a voice channel first, then run the command again (or pass `channel:`).")
        return voice.channel

    async def connect(self, channel: discord.VoiceChannel | discord.StageChannel) -> discord.VoiceClient:
        """Be connected to `channel` (joining or moving there) with the guild's stream ready."""
        guild = channel.guild
        async with self._locks.setdefault(guild.id, asyncio.Lock()):
            vc = await self._settled_client(guild)
            if vc is not None and vc.is_connected():
                if vc.channel.id != channel.id:
                    await vc.move_to(channel)
            else:
                vc = await self._join(channel, vc)
            # The player starts with the first audio, not now: a model that loads meanwhile cannot starve it.
            self._sources.setdefault(guild.id, PCMStreamSource(prebuffer_s=self.prebuffer_s))
            self._arm_idle_leave(guild.id)  # joined with nothing to say (/join): leave after the idle time too
            return vc

    @staticmethod
    async def _settled_client(guild: discord.Guild) -> discord.VoiceClient | None:
        """The guild's voice client once discord.py's own reconnect attempt (after a drop) has ended either way."""
        vc = guild.voice_client
        deadline = asyncio.get_running_loop().time() + SETTLE_TIMEOUT_S
        while isinstance(vc, discord.VoiceClient) and not vc.is_connected():
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
            vc = guild.voice_client
        return vc if isinstance(vc, discord.VoiceClient) else None

    async def _join(self, channel, stale: discord.VoiceClient | None) -> discord.VoiceClient:
        me = channel.guild.me
        permissions = channel.permissions_for(me) if me is not None else None
        if permissions is not None and not (permissions.connect and permissions.speak):
            raise UserError(f"I need the Connect and Speak permissions in {channel.mention}.")
        for attempt in (1, 2):  # a drop's late clean-up can race the first attempt; the second starts clean
            if stale is not None:
                await stale.disconnect(force=True)
            try:
                return await channel.connect(timeout=CONNECT_TIMEOUT_S, self_deaf=True)
            except (asyncio.TimeoutError, discord.ClientException) as exc:
                log.warning("voice connect to %s failed (attempt %d): %r", channel.id, attempt, exc)
                stale = (
                    channel.guild.voice_client if isinstance(channel.guild.voice_client, discord.VoiceClient) else None
                )
        raise UserError(f"I could not join {channel.mention}; try again in a moment.")

    async def leave(self, guild: discord.Guild) -> bool:
        self._disarm_idle_leave(guild.id)
        source = self._sources.pop(guild.id, None)
        if source is not None:
            source.close()  # the player reads b'' and stops itself, while the loop can still take its last call
            ended = self._ended.get(source)
            if ended is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(ended.wait(), PLAYER_STOP_TIMEOUT_S)
        vc = guild.voice_client
        if vc is None:
            return False
        await vc.disconnect(force=True)
        return True

    async def leave_all(self) -> None:
        for guild in list(self.client.guilds):
            if guild.voice_client is not None:
                try:
                    await self.leave(guild)
                except Exception:
                    log.exception("leaving voice in guild %s failed", guild.id)

    def is_alone(self, guild: discord.Guild) -> bool:
        """True when the bot is connected and no human is left in its channel."""
        vc = guild.voice_client
        if vc is None or vc.channel is None:
            return False
        return not any(not m.bot for m in vc.channel.members)

    # -- streaming ---------------------------------------------------------------------------------------------------

    def expect(self, guild_id: int, tag: object) -> None:
        """A render for this guild is queued or running: do not leave for being idle until it has `end`ed."""
        self._expected.setdefault(guild_id, set()).add(tag)
        self._disarm_idle_leave(guild_id)

    def feed(self, guild_id: int, tag: object, pcm: bytes, made_at: float | None = None) -> bool:
        """Queue 48 kHz stereo s16 audio (made at `made_at`, time.monotonic); False when the guild has no live voice
        connection (nothing is queued)."""
        source = self._live_source(guild_id)
        if source is None:
            return False
        source.feed(tag, pcm, made_at)
        self._disarm_idle_leave(guild_id)
        return True

    def begin_segment(self, guild_id: int, tag: object, bound_s: float, began_at: float | None = None) -> None:
        """`tag`'s next audio is a new script segment of at most `bound_s` seconds whose production began at
        `began_at` (time.monotonic; for its gapless start)."""
        source = self._sources.get(guild_id)
        if source is not None:
            source.begin_segment(tag, bound_s, began_at)

    def queued_seconds(self, guild_id: int | None = None) -> float:
        """Audio queued in one guild, or in the whole process."""
        sources = list(self._sources.values()) if guild_id is None else [self._sources.get(guild_id)]
        return sum(s.queued_bytes() for s in sources if s is not None) / BYTES_PER_SECOND

    def has_room(self, guild_id: int, seconds: float) -> bool:
        """May `seconds` more audio be queued for this guild? Always when nothing is queued there (no deadlock)."""
        guild = self.queued_seconds(guild_id)
        if guild <= 0:
            return True
        limits = self.limits
        return (
            guild + seconds <= limits.max_buffered_s and self.queued_seconds() + seconds <= limits.max_buffered_total_s
        )

    async def wait_for_room(self, guild_id: int, tag: object, seconds: float) -> float:
        """Backpressure: wait while the guild (or the process) has too much audio queued for `seconds` more; returns
        the seconds waited. Returns at once when the guild has no stream (the feed will report the lost voice)."""
        source = self._sources.get(guild_id)
        if source is None or self.has_room(guild_id, seconds):
            return 0.0
        started = time.monotonic()
        source.hold(tag, True)
        try:
            while self._sources.get(guild_id) is source and not self.has_room(guild_id, seconds):
                await asyncio.sleep(ROOM_POLL_S)
        finally:
            waited = time.monotonic() - started
            source.hold(tag, False, waited)
        return waited

    def connected(self, guild_id: int) -> bool:
        vc = self._voice_client(guild_id)
        return vc is not None and vc.is_connected()

    def resuming(self, guild_id: int) -> bool:
        """The guild's voice client exists but is not connected, for no longer than the resume grace so far."""
        vc = self._voice_client(guild_id)
        if vc is None or vc.is_connected():
            self._unconnected_since.pop(guild_id, None)  # the next unconnected spell gets a fresh grace
            return False
        since = self._unconnected_since.get(guild_id)
        return since is not None and time.monotonic() - since <= RESUME_GRACE_S

    def end(self, guild_id: int, tag: object) -> None:
        """No more audio comes for `tag` (the render ended, however it ended): what is queued plays out, the guild's
        stream goes on to the next render, and the bot may go idle."""
        source = self._sources.get(guild_id)
        if source is not None:
            source.end(tag)
        self._release(guild_id, tag)

    def stop(self, guild_id: int) -> float:
        """Silence the guild now; returns the seconds of audio dropped."""
        source = self._sources.get(guild_id)
        return source.drop_all() / BYTES_PER_SECOND if source is not None else 0.0

    def skip(self, guild_id: int, tag: object) -> None:
        source = self._sources.get(guild_id)
        if source is not None:
            source.drop(tag)
        self._release(guild_id, tag)

    def playing_tag(self, guild_id: int) -> object | None:
        source = self._sources.get(guild_id)
        return source.playing_tag if source is not None else None

    def source(self, guild_id: int) -> PCMStreamSource | None:
        return self._sources.get(guild_id)

    # -- internals ---------------------------------------------------------------------------------------------------

    def _voice_client(self, guild_id: int) -> discord.VoiceClient | None:
        guild = self.client.get_guild(guild_id)
        vc = guild.voice_client if guild is not None else None
        return vc if isinstance(vc, discord.VoiceClient) else None

    def _live_source(self, guild_id: int) -> PCMStreamSource | None:
        vc = self._voice_client(guild_id)
        if vc is None:
            self._unconnected_since.pop(guild_id, None)
            return None
        if vc.is_connected():
            self._unconnected_since.pop(guild_id, None)
            return self._ensure_playing(vc)
        since = self._unconnected_since.setdefault(guild_id, time.monotonic())
        if time.monotonic() - since > RESUME_GRACE_S:
            return None
        return self._sources.get(guild_id)  # resuming: the waiting player plays it once the connection is back

    def _ensure_playing(self, vc: discord.VoiceClient) -> PCMStreamSource:
        guild_id = vc.guild.id
        source = self._sources.get(guild_id)
        if source is not None and vc.source is source:
            if vc.is_paused():  # idle until now: speaking on, packets again (the player restarts its schedule)
                vc.resume()
                log.debug("voice player in guild %s resumed", guild_id)
            if vc.is_playing():
                return source
        if source is None or source in self._played:  # a player that ended takes its source with it
            source = PCMStreamSource(prebuffer_s=self.prebuffer_s)
            self._sources[guild_id] = source
        self._played.add(source)
        self._ended[source] = asyncio.Event()
        loop = asyncio.get_running_loop()

        def after(error: Exception | None) -> None:
            # Runs in the player thread: hop back to the loop before touching our state (unless it already closed).
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._player_ended, guild_id, source, error)

        def idle() -> None:  # player thread, as above
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._went_idle, guild_id, source)

        source.on_idle = idle

        vc.play(
            source,
            after=after,
            bitrate=128,  # full quality: narration is listened to closely, and the master must match what is heard
            # CELT-only, no SILK/hybrid: on rendered speech the decoded waveform follows the master far more closely
            # (correlation 0.99 vs 0.85 with 'audio' on tiny-checkpoint output) and the codec delay drops 6.5 -> 2.5 ms.
            application="lowdelay",
        )
        return source

    def _player_ended(self, guild_id: int, source: PCMStreamSource, error: Exception | None) -> None:
        if error is not None:
            log.warning("voice player in guild %s stopped with an error: %r", guild_id, error)
        else:
            log.info("voice player in guild %s stopped", guild_id)
        ended = self._ended.pop(source, None)
        if ended is not None:
            ended.set()
        if self._sources.get(guild_id) is not source:
            return  # left on purpose (/leave, idle): the source was let go first
        del self._sources[guild_id]
        unheard = source.unheard_tags()
        if unheard and self.on_unheard is not None:  # kicked or dropped with audio queued: its owners are told
            self.on_unheard(guild_id, unheard)

    # -- idle --------------------------------------------------------------------------------------------------------

    def _went_idle(self, guild_id: int, source: PCMStreamSource) -> None:
        """The stream has had nothing to play for a moment: pause the player (it sends discord.py's closing silence
        frames and speaking off, then no packets at all) until the next audio resumes it."""
        vc = self._voice_client(guild_id)
        if self._sources.get(guild_id) is not source or not source.idle or vc is None:
            return
        if vc.source is source and vc.is_playing():
            vc.pause()
            log.debug("voice player in guild %s paused: nothing queued", guild_id)
        self._arm_idle_leave(guild_id)

    def _release(self, guild_id: int, tag: object) -> None:
        expected = self._expected.get(guild_id)
        if expected is not None:
            expected.discard(tag)
            if not expected:
                del self._expected[guild_id]
        self._arm_idle_leave(guild_id)

    def _idle_now(self, guild_id: int) -> bool:
        source = self._sources.get(guild_id)
        return not self._expected.get(guild_id) and (source is None or source.idle)

    def _arm_idle_leave(self, guild_id: int) -> None:
        if self.limits.idle_leave_s <= 0 or not self._idle_now(guild_id) or guild_id in self._idle_timers:
            return
        loop = asyncio.get_running_loop()
        self._idle_timers[guild_id] = loop.call_later(self.limits.idle_leave_s, self._idle_timeout, guild_id)

    def _disarm_idle_leave(self, guild_id: int) -> None:
        timer = self._idle_timers.pop(guild_id, None)
        if timer is not None:
            timer.cancel()

    def _idle_timeout(self, guild_id: int) -> None:
        self._idle_timers.pop(guild_id, None)
        guild = self.client.get_guild(guild_id)
        if guild is None or guild.voice_client is None or not self._idle_now(guild_id):
            return
        log.info("nothing said in guild %s for %g s: leaving voice", guild_id, self.limits.idle_leave_s)
        task = asyncio.get_running_loop().create_task(self.leave(guild))
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)

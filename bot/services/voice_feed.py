"""A render's audio on its way into the guild's voice stream, and telling its owner once if they will not hear it.

Audio goes in pieces of at most 1 s, each once the guild has room (backpressure: a render waits while its guild has
NARRATOR_MAX_BUFFERED_SECONDS queued, so a pause flood holds its compute instead of filling memory). Voice can be lost
three ways, and each tells the owner once: a feed is refused, a connection that was resuming is still down after the
grace, or the player ends (a kick) with the render's audio still queued, which under gapless playback can be long
after the render fed its last chunk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache

from bot.voice.connections import RESUME_GRACE_S
from bot.voice.source import BYTES_PER_SECOND

if TYPE_CHECKING:
    from bot.jobs.queue import Job
    from bot.services.progress import Reporter
    from bot.voice.connections import Playback

log = logging.getLogger(__name__)

FEED_PIECE_BYTES = BYTES_PER_SECOND  # audio goes to voice in pieces of at most 1 s, each waiting for room
MAX_REMEMBERED_RENDERS = 1000  # renders whose queued audio may still be lost
VOICE_LOST_NOTE = (
    "I lost the voice connection, so you will not hear the rest; the recording will still be posted here. "
    "Use /join to bring me back."
)


@dataclass
class Listening:
    """What the feed knows of one render's way into voice."""

    job: Job
    guild_id: int
    render_id: int | None
    reporter: Reporter
    lost: bool = False
    watching_resume: bool = False  # a check is pending on a voice connection that may be resuming


class VoiceFeed:
    def __init__(self, playback: Playback, spawn: Callable[[Coroutine[Any, Any, Any]], None]) -> None:
        self.playback = playback
        self._spawn = spawn
        # job id -> its render, while its audio may still be queued (bounded: the oldest are forgotten)
        self._open: LRUCache[object, Listening] = LRUCache(MAX_REMEMBERED_RENDERS)
        playback.on_unheard = self._unheard

    def open(self, job: Job, guild_id: int, render_id: int | None, reporter: Reporter) -> Listening:
        listening = Listening(job, guild_id, render_id, reporter)
        self._open[job.id] = listening
        return listening

    async def push(self, listening: Listening, pcm: bytes, made_at: float | None = None) -> None:
        """Queue `pcm` (48 kHz stereo) for the guild in pieces, each once there is room. `made_at`: when the
        engine made it (voice measures the production speed by it, not by when it got here)."""
        playback, job, guild_id = self.playback, listening.job, listening.guild_id
        for start in range(0, len(pcm), FEED_PIECE_BYTES):
            piece = pcm[start : start + FEED_PIECE_BYTES]
            await playback.wait_for_room(guild_id, job.id, len(piece) / BYTES_PER_SECOND)
            if listening.lost or job.cancelled:
                return
            if not playback.feed(guild_id, job.id, piece, made_at):
                self.lost(listening)
                return
            if playback.resuming(guild_id) and not listening.watching_resume:
                # Queued for a connection that is not up: it is lost unless discord.py's resume succeeds in time,
                # which a render faster than real time may never find out by feeding, so check once the grace is over.
                listening.watching_resume = True
                self._spawn(self._check_resumed(listening))

    async def _check_resumed(self, listening: Listening) -> None:
        await asyncio.sleep(RESUME_GRACE_S + 0.1)
        listening.watching_resume = False
        guild_id = listening.guild_id
        if self.playback.resuming(guild_id) or not self.playback.connected(guild_id):
            self.lost(listening)

    def lost(self, listening: Listening) -> None:
        if listening.lost:
            return
        listening.lost = True
        log.warning("voice connection lost in guild %s during render #%s", listening.guild_id, listening.render_id)
        self._spawn(listening.reporter.note(VOICE_LOST_NOTE))

    def _unheard(self, guild_id: int, tags: list[object]) -> None:
        """The guild's player ended with these renders' audio unplayed: each owner hears why, once."""
        for tag in tags:
            listening = self._open.pop(tag, None)
            if listening is not None and listening.guild_id == guild_id:
                self.lost(listening)

"""Telling the user how their render goes, through the deferred interaction response.

`InteractionReporter` edits the original (deferred) response at most once a second: intermediate texts that arrive
faster are coalesced and only the latest is shown (waiting renders are kept told their place by
`bot.services.queue_board.QueueBoard`, within a global edit budget). The master goes out as a followup attachment with every mention
disabled, so a script can never ping anyone. The render service talks to the `Reporter` protocol only.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from typing import Protocol

import discord

from bot.durations import about
from bot.voice.attachments import Attachment

log = logging.getLogger(__name__)

MIN_EDIT_INTERVAL_S = 1.0
NO_MENTIONS = discord.AllowedMentions.none()
MESSAGE_LIMIT = 2000  # characters of one Discord message


class Reporter(Protocol):
    async def status(self, text: str) -> None: ...  # throttled progress line

    async def done(self, text: str, attachment: Attachment | None) -> None: ...

    async def note(self, text: str) -> None: ...  # a separate, private remark (e.g. voice connection lost)


def progress_line(segment: int, total: int, elapsed_s: float, eta_s: float | None) -> str:
    """'Rendering segment 2 of 5 · 3 s elapsed · about 7 s left'."""
    parts = [f"Rendering segment {segment} of {total}", f"{elapsed_s:.0f} s elapsed"]
    if eta_s is not None:
        parts.append(f"about {max(0.0, eta_s):.0f} s left")
    return " · ".join(parts)


def queued_line(position: int, wait_s: float | None, own_s: float | None) -> str:
    """'Queued, position 3 — starts in about 40 s, takes about 12 s.' (the parts with an unknown time left out)."""
    parts = [f"starts in about {about(wait_s)}" if wait_s is not None else None,
             f"takes about {about(own_s)}" if own_s is not None else None]  # fmt: skip
    times = ", ".join(p for p in parts if p)
    return f"Queued, position {position}" + (f" — {times}." if times else ".")


def starting_line(own_s: float | None) -> str:
    """'Starting… takes about 12 s.' (just 'Starting…' when the time is unknown)."""
    return "Starting…" if own_s is None else f"Starting… takes about {about(own_s)}."


def fit_lines(lines: list[str], limit: int = MESSAGE_LIMIT) -> str:
    """The lines joined, cut to fit one message: '… and 37 more' stands for the lines left out."""
    text = "\n".join(lines)
    if len(text) <= limit:
        return text
    kept: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        footer = f"… and {len(lines) - index} more"
        if used + len(line) + 1 + len(footer) > limit:
            return "\n".join([*kept, footer])
        kept.append(line)
        used += len(line) + 1
    return "\n".join(kept)  # pragma: no cover - the whole text did not fit, so some line does not


class InteractionReporter:
    def __init__(self, interaction: discord.Interaction) -> None:
        self.interaction = interaction
        self.filesize_limit = interaction.filesize_limit  # bytes per attachment for this guild (boost tier)
        self.edits = 0
        self._last_edit = float("-inf")
        self._pending: str | None = None
        self._flusher: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    async def status(self, text: str) -> None:
        self._pending = text
        wait = self._last_edit + MIN_EDIT_INTERVAL_S - time.monotonic()
        if wait <= 0:
            await self._flush()
        elif self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_after(wait))

    async def done(self, text: str, attachment: Attachment | None) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        self._pending = text
        await asyncio.sleep(max(0.0, self._last_edit + MIN_EDIT_INTERVAL_S - time.monotonic()))
        await self._flush()
        if attachment is None:
            return
        try:
            await self.interaction.followup.send(file=_file(attachment), allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            # Interaction tokens last 15 minutes; a longer render posts its master in the channel instead.
            log.warning("followup with the master failed (%s); posting it in the channel", exc)
            channel = self.interaction.channel
            if channel is not None:
                await self._safe(channel.send(text, file=_file(attachment), allowed_mentions=NO_MENTIONS))

    async def note(self, text: str) -> None:
        await self._safe(self.interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS))

    async def _flush_after(self, wait: float) -> None:
        await asyncio.sleep(wait)
        await self._flush()

    async def _flush(self) -> None:
        async with self._lock:
            text, self._pending = self._pending, None
            if text is None:
                return
            self._last_edit = time.monotonic()
            self.edits += 1
            await self._safe(self.interaction.edit_original_response(content=text, allowed_mentions=NO_MENTIONS))

    @staticmethod
    async def _safe(coro) -> None:
        # A deleted message or an expired token (15 min) must not break the render; the master is on disk anyway.
        try:
            await coro
        except discord.HTTPException as exc:
            log.warning("could not update the interaction: %s", exc)


def _file(attachment: Attachment) -> discord.File:
    return discord.File(fp=io.BytesIO(attachment.data), filename=attachment.filename)

"""Chat narration: messages of a bound text channel read aloud in the voice channel, each in its author's voice.

The way of one message: the cog turns a `discord.Message` into a `ChatMessage` and calls `on_message`. It is read if
its channel is bound, `bot.chat.rules.check_message` lets it through, the bot is in voice (or autojoin brings it
there) and, when the guild asks for it, the author sits in the bot's voice channel. It then waits in the guild's
`Backlog` (order, the 5-message cap, edits and deletions: `bot.chat.backlog`). Just before it renders, it is
cleaned (`bot.chat.cleanup`) with the author's and guild's pronunciation dictionary, "alice said" is put before it
when due, and it becomes a `SayRequest` in the author's voice (locked voice, else the guild default, else a preset
chosen from the user id) that renders through `SayService.stream`: the same hand-off to the voice stream as /say,
without a master on disk or messages to the author.

One pump task per guild with messages to read submits renders to the shared `JobQueue`: at most one chat render of a
guild at a time, none while a /say of that guild waits or renders (a chat render still waiting in the queue when a
/say arrives is taken back), so /say always goes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.chat.backlog import Backlog, Item, State
from bot.chat.cleanup import CleanupOptions, clean_message
from bot.chat.message import ChatMessage, Resolver
from bot.chat.rules import AnnouncementThrottle, ReadRules, check_message, compose, preset_speaker
from bot.errors import QueueFull, UserError
from bot.jobs.queue import Job
from bot.narration import planning as narrate
from bot.services.say import SayRequest

if TYPE_CHECKING:
    from bot.jobs.queue import JobQueue
    from bot.jobs.worker import InferenceWorker
    from bot.services.chat_config import ChatConfig
    from bot.services.library import VoiceLibrary
    from bot.services.pronunciation import PronunciationService
    from bot.services.say import SayService
    from bot.voice.connections import Playback
    from db import repo

log = logging.getLogger(__name__)

CHAT_LABEL = "chat message"
POLL_S = 0.05  # how often a busy guild's pump looks at its voice stream (audio finished, /say waiting)
CHAT_MAX_CHARS = 20_000  # the cleaned text is already cut to the guild's seconds limit; this only bounds the parser
HISTORY = 200  # spoken messages remembered for /narrate status, logs and measurements


@dataclass
class Pending:
    """What an item carries: the message as last seen (edits replace it) and how to name what it mentions."""

    message: ChatMessage
    resolver: Resolver
    received_at: float


class _Quiet:
    """A `Reporter` for chat renders: nobody waits on an interaction, so progress and notes only go to the log."""

    async def status(self, text: str) -> None:
        pass

    async def done(self, text: str, attachment: Any) -> None:
        pass

    async def note(self, text: str) -> None:
        log.info("chat narration: %s", text)


class _Reader:
    def __init__(self, guild_id: int) -> None:
        self.guild_id = guild_id
        self.backlog = Backlog()
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None


class ChatService:
    def __init__(
        self,
        config: ChatConfig,
        dictionaries: PronunciationService,
        say: SayService,
        library: VoiceLibrary,
        queue: JobQueue,
        playback: Playback,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config, self.dictionaries, self.say, self.library = config, dictionaries, say, library
        self.queue, self.playback, self.clock = queue, playback, clock
        self.throttle = AnnouncementThrottle(clock=clock)
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.dropped = 0  # messages dropped by the backlog cap, since start
        self._readers: dict[int, _Reader] = {}
        self._chat_jobs: set[int] = set()
        self._ours: set[int] = set()  # chat jobs this service cancelled itself (edit, deletion, drop, /say first)
        self._tasks: set[asyncio.Task] = set()
        say.stop_hooks.append(self.clear)

    # -- events from the cog -----------------------------------------------------------------------------------------

    async def on_message(self, message: ChatMessage, resolver: Resolver, author_voice: Any = None) -> str | None:
        """Queue `message` if it is to be read; returns why not (for logs and tests), None when it was queued.
        `author_voice` is the author's voice channel (None: not in voice)."""
        if await self.config.binding(message.guild_id, message.channel_id) is None:
            return "channel not bound"
        settings = await self.config.settings(message.guild_id)
        verdict = check_message(message, ReadRules(settings.skip_prefix, settings.read_prefix))
        if not verdict.read:
            log.debug("chat message %s not read: %s", message.id, verdict.reason.value)
            return verdict.reason.value
        where = await self._voice_for(message.guild_id, settings, author_voice)
        if where is not None:
            return where
        message = dataclasses.replace(message, content=verdict.content)
        reader = self._reader(message.guild_id)
        item = Item(message.id, Pending(message, resolver, self.clock()))
        for old in reader.backlog.add(item, self._speaking):
            self._discard(old)
            self.dropped += 1
            log.warning("chat backlog full in guild %s: dropped message %s", message.guild_id, old.message_id)
        reader.wake.set()
        return None

    async def on_edit(self, message: ChatMessage, resolver: Resolver) -> None:
        reader = self._readers.get(message.guild_id)
        item = reader.backlog.find(message.id) if reader else None
        if item is None:
            return
        settings = await self.config.settings(message.guild_id)
        verdict = check_message(message, ReadRules(settings.skip_prefix, settings.read_prefix))
        if not verdict.read:  # edited into something not to read (e.g. the skip prefix added)
            self.on_delete(message.guild_id, message.id)
            return
        edited = Pending(dataclasses.replace(message, content=verdict.content), resolver, item.payload.received_at)
        job = item.job
        item, redo = reader.backlog.edit(message.id, edited, self._speaking)
        if redo and job is not None:
            self._cancel(job)
        log.info("chat message %s edited before it was spoken%s", message.id, " (rendering again)" if redo else "")
        reader.wake.set()

    def on_delete(self, guild_id: int, message_id: int) -> None:
        reader = self._readers.get(guild_id)
        item = reader.backlog.remove(message_id) if reader else None
        if item is not None:
            self._discard(item)
            log.info("chat message %s deleted before it was heard: not read", message_id)
            reader.wake.set()

    def clear(self, guild_id: int) -> int:
        """Forget every chat message waiting in `guild_id` (/stop, unbinding); returns how many."""
        reader = self._readers.get(guild_id)
        if reader is None:
            return 0
        items = reader.backlog.clear()
        for item in items:
            self._discard(item)
        reader.wake.set()
        return len(items)

    def now_speaking(self, guild_id: int) -> tuple[int, bool] | None:
        """(message id, whether its render has finished) of the chat message being heard now, if any."""
        reader = self._readers.get(guild_id)
        item = next((i for i in reader.backlog.items if self._speaking(i)), None) if reader else None
        return None if item is None else (item.message_id, item.state is State.RENDERED)

    def waiting(self, guild_id: int) -> int:
        reader = self._readers.get(guild_id)
        return len(reader.backlog) if reader else 0

    async def close(self) -> None:
        for reader in self._readers.values():
            reader.backlog.clear()
            if reader.task is not None:
                reader.task.cancel()
        for task in list(self._tasks):
            task.cancel()

    # -- voice -------------------------------------------------------------------------------------------------------

    async def _voice_for(self, guild_id: int, settings: Any, author_voice: Any) -> str | None:
        """None when the message can be heard; else why not. Joins the author's channel under autojoin."""
        if not self.playback.connected(guild_id):
            if not (settings.autojoin and author_voice is not None):
                return "not in a voice channel"
            try:
                await self.playback.connect(author_voice)
            except UserError as exc:
                log.warning("chat autojoin in guild %s failed: %s", guild_id, exc)
                return "could not join"
        if settings.require_author_in_voice:
            here = self.playback.client.get_guild(guild_id)
            vc = here.voice_client if here is not None else None
            if author_voice is None or vc is None or getattr(vc.channel, "id", None) != author_voice.id:
                return "author not in my voice channel"
        return None

    def _speaking(self, item: Item) -> bool:
        job = item.job
        if job is None:
            return False
        return self.playback.playing_tag(item.payload.message.guild_id) == job.id

    def _heard(self, guild_id: int, item: Item) -> bool:
        source = self.playback.source(guild_id)
        return source is None or item.job is None or not source.has_audio(item.job.id)

    # -- the pump ----------------------------------------------------------------------------------------------------

    def _reader(self, guild_id: int) -> _Reader:
        reader = self._readers.get(guild_id)
        if reader is None:
            reader = self._readers[guild_id] = _Reader(guild_id)
        if reader.task is None or reader.task.done():
            reader.task = asyncio.get_running_loop().create_task(self._pump(reader), name=f"chat pump {guild_id}")
        return reader

    async def _pump(self, reader: _Reader) -> None:
        guild_id = reader.guild_id
        try:
            while True:
                for item in reader.backlog.played(lambda i: self._heard(guild_id, i)):
                    self._chat_jobs.discard(item.job.id if item.job else 0)
                    self._record(item)
                if self._say_waits(guild_id):
                    self._yield_to_say(reader)
                else:
                    item = reader.backlog.next_to_render()
                    if item is not None:
                        self._submit(reader, item)
                if not len(reader.backlog):
                    break
                reader.wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(reader.wake.wait(), POLL_S)
        except Exception:
            log.exception("chat pump of guild %s failed", guild_id)
        finally:
            if self._readers.get(guild_id) is reader and not len(reader.backlog):
                del self._readers[guild_id]

    def _say_waits(self, guild_id: int) -> bool:
        """A /say (any job that is not chat) of this guild is queued or rendering."""
        jobs = [*self.queue.running(guild_id), *(j for j in self.queue.service_order() if j.guild_id == guild_id)]
        return any(j.id not in self._chat_jobs for j in jobs)

    def _yield_to_say(self, reader: _Reader) -> None:
        for item in reader.backlog.items:
            if item.state is State.RENDERING and item.job is not None and item.job.state == "queued":
                log.info("chat message %s waits: a /say goes first", item.message_id)
                self._cancel(item.job)
                item.state, item.job = State.WAITING, None

    def _submit(self, reader: _Reader, item: Item) -> None:
        message = item.payload.message
        job = Job(message.guild_id, message.author_id, lambda job, worker: self._work(job, worker, item),
                  label=CHAT_LABEL, predicted_s=self._predict(item))  # fmt: skip
        try:
            self.queue.submit(job)
        except QueueFull:
            return  # the author has /say renders waiting: this message tries again on the next round
        self._chat_jobs.add(job.id)
        item.state, item.job = State.RENDERING, job
        item.meta.setdefault("submitted_at", self.clock())
        task = asyncio.get_running_loop().create_task(self._follow(reader, item, job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _predict(self, item: Item) -> float | None:
        """Smart ETA of a chat render (so a /say behind it is told a time): its words at the measured model speed."""
        workers = self.say.workers
        if not workers or workers[0].narrator is None:
            return None
        from bot.narration import parse_script

        cleaned = clean_message(item.payload.message, item.payload.resolver)
        try:
            script = parse_script(cleaned.text, max_chars=CHAT_MAX_CHARS) if cleaned else None
        except ValueError:
            return None
        return float(workers[0].narrator.predict_seconds(script)) if script else 0.0

    async def _follow(self, reader: _Reader, item: Item, job: Job) -> None:
        try:
            result = await job.done
        except asyncio.CancelledError:
            if job.id not in self._ours and reader.backlog.find(item.message_id) is item and item.job is job:
                reader.backlog.remove(item.message_id)  # /skip on a message still rendering: heard in part
                self._record(item, skipped=True)
            self._ours.discard(job.id)
            self._chat_jobs.discard(job.id)
            reader.wake.set()
            return
        except Exception:
            log.exception("chat message %s could not be read", item.message_id)
            if item.job is job:
                reader.backlog.remove(item.message_id)
            self._chat_jobs.discard(job.id)
            reader.wake.set()
            return
        if item.job is job:
            if result is None:  # nothing to say, or stopped
                reader.backlog.remove(item.message_id)
            else:
                item.meta["result"] = result
                reader.backlog.rendered(item)
        reader.wake.set()

    def _cancel(self, job: Job) -> None:
        self._ours.add(job.id)
        self.queue.cancel(job)
        self.playback.skip(job.guild_id, job.id)

    def _discard(self, item: Item) -> None:
        if item.job is not None:
            self._cancel(item.job)
            item.job = None

    # -- the job (on an inference worker) ----------------------------------------------------------------------------

    async def _work(self, job: Job, worker: InferenceWorker, item: Item) -> Any:
        item.meta["started_at"] = self.clock()
        request = await self.request_for(item)
        if request is None or job.cancelled:
            return None
        item.meta["request"] = request
        return await self.say.stream(job, worker, request, _Quiet())

    async def request_for(self, item: Item) -> SayRequest | None:
        """The render of a message as it reads now: cleaned, dictionary applied, name announced when due."""
        pending: Pending = item.payload
        message = pending.message
        settings = await self.config.settings(message.guild_id)
        dictionary = await self.dictionaries.for_member(message.guild_id, message.author_id)
        options = CleanupOptions(honour_tags=settings.emotion_tags_in_chat, max_seconds=settings.max_message_seconds)
        cleaned = clean_message(message, pending.resolver, options, dictionary)
        if cleaned is None:
            log.debug("chat message %s has nothing to say", message.id)
            return None
        if item.announce is None:
            item.announce = settings.announce_names and self.throttle.should_announce(
                message.guild_id, message.author_id
            )
        name = None
        if item.announce:
            name = await self.config.nickname(message.guild_id, message.author_id) or message.author_name
        script = compose(cleaned, name, settings.name_template)
        voice = await self._voice_of(message.guild_id, message.author_id)
        plan = await narrate.plan(script, CHAT_MAX_CHARS, voice, self._no_voice_switch)
        item.meta.update(spoken=cleaned.spoken, announced=bool(name), fired=[f.to_dict() for f in cleaned.fired])
        return SayRequest(message.guild_id, message.channel_id, message.author_id, script, plan, voice,
                          keep_master=False)  # fmt: skip

    async def _voice_of(self, guild_id: int, user_id: int) -> repo.Voice | None:
        voice = await self.library.for_say(guild_id, user_id, None)
        if voice is not None:
            return voice
        presets = await self.library.preset_speakers()
        if not presets:
            return None  # the engine's default speaker
        return await self.library.resolve(guild_id, user_id, preset_speaker(user_id, presets))

    @staticmethod
    async def _no_voice_switch(name: str) -> repo.Voice:
        # cleanup escapes every bracket that is not an emotion or a pause, so no `[@name]` reaches the parser
        raise UserError("voice switches are not read in chat")

    def _record(self, item: Item, *, skipped: bool = False) -> None:
        """Remember a message that was heard (in the order heard), for /narrate status, logs and measurements."""
        request: SayRequest | None = item.meta.get("request")
        result = item.meta.get("result")
        if request is None:
            return
        pending: Pending = item.payload
        voice = request.voice
        self.history.append(
            {
                "message_id": item.message_id,
                "guild_id": request.guild_id,
                "author_id": request.user_id,
                "voice_id": voice.id if voice else None,
                "voice": voice.name if voice else None,
                "spoken": item.meta.get("spoken"),
                "announced": item.meta.get("announced"),
                "fired": item.meta.get("fired"),
                "received_at": pending.received_at,
                "started_at": item.meta.get("started_at"),
                "first_audio_s": request.stats.get("first_audio"),
                "engine_first_audio_s": getattr(result, "timings", {}).get("first_audio_s"),
                "audio_seconds": getattr(result, "audio_seconds", None),
                "job_id": item.job.id if item.job else None,
                "skipped": skipped,
            }
        )

"""The /say service: validate a script, queue a render job, stream its audio into voice, post the master.

The way of one /say (ARCHITECTURE.md): `prepare` parses and resolves voices before anything is deferred (so bad
input gets an ephemeral reply and nothing is queued); `submit` records the render, joins voice and queues the job
with its Smart ETA (`Narrator.predict_seconds`, told to a user who must wait); the job (on an inference worker)
drives the narration engine and fans each 24 kHz chunk out to the guild's voice stream (resampled once) while the
engine writes the master; `_follow` reports the outcome. The render's row lives in `render_rows`, its way into
voice (backpressure, telling the owner once if voice is lost) in `voice_feed`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import discord
from cachetools import LRUCache

from bot.durations import about
from bot.errors import NotAllowed, QueueFull, UserError
from bot.jobs.queue import Job, JobQueue
from bot.narration import planning as narrate
from bot.narration.production import AudioChunk, Finished, Progress
from bot.services.progress import Reporter, fit_lines, progress_line, queued_line, starting_line
from bot.services.queue_board import QueueBoard
from bot.services.render_rows import RenderRows, told_if_database_fails
from bot.services.voice_feed import Listening, VoiceFeed
from bot.voice.attachments import attachment_for
from bot.voice.source import StereoUpsampler

if TYPE_CHECKING:
    from bot.jobs.worker import InferenceWorker
    from bot.services.guild_config import GuildConfig
    from bot.services.library import VoiceLibrary
    from bot.services.pronunciation import PronunciationService
    from bot.settings import Settings
    from bot.voice.connections import Playback
    from db import repo
    from db.engine import Database

log = logging.getLogger(__name__)

# A script predicted to need more than this share of NARRATOR_JOB_TIMEOUT_S is refused before queueing: it would
# very likely be stopped by the timeout after holding a worker for all of it.
MAX_TIMEOUT_SHARE = 0.8
MAX_REMEMBERED_OWNERS = 1000
SYNTHETIC = "Synthetic speech (AI-generated)"


@dataclass
class SayRequest:
    guild_id: int
    channel_id: int  # the text channel of the command
    user_id: int
    script: str
    plan: Any  # narrate.Plan: parsed script + identities
    voice: repo.Voice | None
    render_id: int | None = None
    predicted_s: float | None = None  # Smart ETA of the render (compute seconds), set by `prepare`
    keep_master: bool = True  # False: stream only, no master on disk (chat narration)
    stats: dict[str, float] = field(default_factory=dict)


class SayService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        queue: JobQueue,
        workers: Sequence[InferenceWorker],
        library: VoiceLibrary,
        guild_config: GuildConfig,
        playback: Playback,
        dictionaries: PronunciationService | None = None,
    ) -> None:
        self.settings = settings
        self.dictionaries = dictionaries  # the pronunciation dictionary, applied to scripts outside tags
        self.rows = RenderRows(db, self._spawn)
        self.queue = queue
        self.workers = workers
        self.library = library
        self.guild_config = guild_config
        self.playback = playback
        self._tasks: set[asyncio.Task] = set()
        self._waiting: dict[int, tuple[Job, Reporter]] = {}  # queued renders, to update their position
        self.closing = False  # set by Services.shutdown: cancelled renders stay "running" -> "interrupted" next start
        # job id -> user id of recent renders: a render's audio may play on after its job ended, and /skip or /stop
        # must still know whose it is (bot.services.permissions).
        self.job_owners: LRUCache[object, int] = LRUCache(MAX_REMEMBERED_OWNERS)
        self.stop_hooks: list[Callable[[int], object]] = []  # told the guild id on /stop (chat drops its backlog)
        self.voice = VoiceFeed(playback, self._spawn)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # never "Task exception was never retrieved"
            log.error("a /say background task failed", exc_info=task.exception())

    # -- validating (before defer) -----------------------------------------------------------------------------------

    async def prepare(
        self, guild_id: int, channel_id: int, user_id: int, role_ids: set[int], script: str, voice_name: str | None
    ) -> SayRequest:
        """The validated request (UserError otherwise, DatabaseBusy if the lookups fail); nothing is queued yet."""
        with told_if_database_fails("prepare"):
            request = await self._looked_up(guild_id, channel_id, user_id, role_ids, script, voice_name)
        self.queue.check_room(guild_id, user_id, workers=self._slots())
        request.predicted_s = self.predict_seconds(request)
        self._check_work(request)
        return request

    async def _looked_up(
        self, guild_id: int, channel_id: int, user_id: int, role_ids: set[int], script: str, voice_name: str | None
    ) -> SayRequest:
        """What `prepare` reads from the database: the server's settings, the voices and the dictionary."""
        config = self.guild_config
        gs = await config.get(guild_id)
        if gs.required_role_id and gs.required_role_id not in role_ids:
            raise NotAllowed(f"This server lets only members with the <@&{gs.required_role_id}> role use /say.")
        max_chars = config.max_script_chars(gs)
        voices = self.library
        voice = await voices.for_say(guild_id, user_id, voice_name)
        plan = await narrate.plan(
            script,
            max_chars,
            voice,
            lambda name: voices.resolve(guild_id, user_id, name),
            max_pause_total_s=self.settings.max_pause_total_s,
            max_checkpoints=self.settings.max_checkpoints_per_script,
        )
        plan = await self._pronounced(plan, guild_id, user_id, script, max_chars)
        return SayRequest(guild_id, channel_id, user_id, script, plan, voice)

    async def _pronounced(self, plan: Any, guild_id: int, user_id: int, script: str, max_chars: int) -> Any:
        """The plan with the pronunciation dictionary applied outside tags. The script as written was parsed first,
        so error positions point into what the user typed; the rules that fired go into the sidecar."""
        if self.dictionaries is None:
            return plan
        applied = (await self.dictionaries.for_member(guild_id, user_id)).apply(script)
        if not applied.fired:
            return plan
        voices = plan.voices
        try:
            parsed = narrate.parse(applied.text, max(max_chars, 2 * len(script)), self.settings.max_pause_total_s)
        except UserError:
            raise UserError(
                "Your script no longer reads after this server's pronunciation dictionary was applied; check the "
                "rules with /dictionary list."
            ) from None
        notes = {"dictionary": {"original_script": script, "fired": [f.to_dict() for f in applied.fired]}}
        return narrate.Plan(parsed, voices, notes)

    def _check_work(self, request: SayRequest) -> None:
        """Refuse, before queueing, a render that could not finish: more speech than one job may generate, or a
        predicted render time over most of the job timeout."""
        speech_s = narrate.speech_seconds(request.plan)
        budget_s = self.settings.max_job_audio_s
        if speech_s > budget_s:
            raise UserError(
                f"This script is about {about(speech_s)} of speech; one /say can make at most {about(budget_s)} "
                "(NARRATOR_MAX_JOB_AUDIO_S). Split it into shorter scripts."
            )
        limit_s = MAX_TIMEOUT_SHARE * self.settings.job_timeout_s
        if request.predicted_s is not None and request.predicted_s > limit_s:
            raise UserError(
                f"This script (about {about(speech_s)} of speech) would take about {about(request.predicted_s)} "
                f"to render, more than the {about(limit_s)} one /say may use (NARRATOR_JOB_TIMEOUT_S is "
                f"{self.settings.job_timeout_s:g} s). Split it into shorter scripts."
            )

    async def auto_leave_enabled(self, guild_id: int) -> bool:
        return (await self.guild_config.get(guild_id)).auto_leave

    # -- queueing ----------------------------------------------------------------------------------------------------

    async def submit(
        self, request: SayRequest, voice_channel: discord.VoiceChannel | discord.StageChannel, reporter: Reporter
    ) -> tuple[Job, int]:
        """Record the render, join voice, then queue it (`enqueue`); returns the job and its 1-based queue position.
        The row comes first so that a database failure (DatabaseBusy) leaves nothing behind, not even a bot moved
        to another channel; a failed join marks the recorded row failed."""
        await self._record(request)
        try:
            await self.playback.connect(voice_channel)
        except Exception as exc:
            await self._mark(request, "failed", error=_error_text(exc))
            raise
        return await self._queue(request, reporter)

    async def enqueue(self, request: SayRequest, reporter: Reporter) -> tuple[Job, int]:
        """Record the render and queue it with its Smart ETA; a render that must wait is told its position, when it
        starts and how long it takes (`queued_line`). Returns the job and its 1-based queue position."""
        await self._record(request)
        return await self._queue(request, reporter)

    async def _record(self, request: SayRequest) -> None:
        """Add the render's row (status queued); DatabaseBusy if it cannot be written, and then there is no row."""
        voice_id = request.voice.id if request.voice else None
        row_id = await self.rows.record(request.guild_id, request.channel_id, request.user_id, request.script, voice_id)
        request.render_id = row_id

    async def _queue(self, request: SayRequest, reporter: Reporter) -> tuple[Job, int]:
        job = self.render_job(request, reporter)
        try:
            position = self.wait_in_line(job, request, reporter)
        except QueueFull as exc:  # filled up since `prepare` checked: the row must not stay "queued" forever
            await self._mark(request, "failed", error=str(exc))
            raise
        if position > 1 or self._all_workers_busy():
            wait_s = self.queue.wait_seconds(job, workers=self._slots())
            self.queue_board.told(job, reporter, position, wait_s)
            await reporter.status(queued_line(position, wait_s, job.predicted_s))
        return job, position

    def render_job(self, request: SayRequest, reporter: Reporter) -> Job:
        """The queue job of a prepared (and recorded) request, with its Smart ETA."""
        job = Job(
            request.guild_id,
            request.user_id,
            lambda job, worker: self._render(job, worker, request, reporter),
            label=f"render #{request.render_id}",
            predicted_s=request.predicted_s if request.predicted_s is not None else self.predict_seconds(request),
        )
        job.on_start = lambda job: self._started(job, reporter)
        return job

    def wait_in_line(self, job: Job, request: SayRequest, reporter: Reporter) -> int:
        """Queue a render job (QueueFull over a cap) and follow it; returns its 1-based position. No await: the
        caps are checked and the job queued in one step of the event loop."""
        position = self.queue.submit(job, workers=self._slots())
        self._waiting[job.id] = (job, reporter)
        self._spawn(self._follow(job, request, reporter))
        return position

    @functools.cached_property
    def queue_board(self) -> QueueBoard:
        """Keeps waiting users told their place, within Discord's edit rate limits (built on first use)."""

        def spawn(coro) -> asyncio.Task:
            task = asyncio.get_running_loop().create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return task

        return QueueBoard(self._waiting_lines, spawn=spawn)

    def _waiting_lines(self) -> list[tuple[Job, Reporter, int, float | None]]:
        """(job, reporter, position, wait) of every waiting render, in one pass over the queue."""
        renders = self._waiting
        return [
            (job, renders[job.id][1], position, wait_s)
            for job, position, wait_s in self.queue.snapshot(workers=self._slots())
            if job.id in renders
        ]

    def predict_seconds(self, request: SayRequest) -> float:
        """Predicted compute seconds of this render (Smart ETA: text length and the measured speed of the model on
        the first worker's device; every render is predicted on the same worker, so the sums stay comparable)."""
        return narrate.predict_seconds(self.workers[0].narrator, request.plan)

    async def drain(self, timeout: float) -> None:
        """Let the outcome reports of just-cancelled renders go out (at shutdown, before the session closes)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    def _started(self, job: Job, reporter: Reporter) -> None:
        """A job left the queue: tell it, and have the board tell every render still waiting its new place and wait
        (one pass over the queue, then only the messages that changed, within the edit budget)."""
        self._waiting.pop(job.id, None)
        self.queue_board.forget(job.id)
        self._spawn(reporter.status(starting_line(job.predicted_s)))
        self.queue_board.changed()  # O(1): the board's one pass over the queue follows, at most once a second

    def _slots(self) -> int:
        """Renders the workers run at once (the queue's waits are shared over them)."""
        return sum(w.slots for w in self.workers)

    def _all_workers_busy(self) -> bool:
        return all(w.full for w in self.workers)

    # -- the job (runs on an inference worker) -----------------------------------------------------------------------

    async def _render(self, job: Job, worker: InferenceWorker, request: SayRequest, reporter: Reporter) -> Any:
        listening = self.voice.open(job, request.guild_id, request.render_id, reporter)
        try:
            return await self._render_into_voice(job, worker, request, listening)
        finally:
            # However the render ended (done, failed, timed out, cancelled, voice lost), its track in the guild's
            # stream is closed: what was queued plays out, a partial frame is padded, and the next render follows.
            self.playback.end(request.guild_id, job.id)

    async def _render_into_voice(
        self, job: Job, worker: InferenceWorker, request: SayRequest, listening: Listening
    ) -> Any:
        await self._mark(request, "running")
        reporter, feed = listening.reporter, self.voice
        playback = self.playback
        upsampler = StereoUpsampler(worker.narrator.engine.audio.sample_rate)  # the engine's rate, from its codec
        started = time.monotonic()
        result, segment, bounds, guild_id = None, 0, None, request.guild_id
        route = str(guild_id)  # a remote engine keeps a guild on one server
        events = narrate.render(worker.narrator, request.plan, job.cancel_event, request.render_id or 0,
                                self.settings.max_job_audio_s, keep_master=request.keep_master, route=route)  # fmt: skip
        async for event in events:
            if isinstance(event, AudioChunk):
                if "first_audio" not in request.stats:
                    request.stats["first_audio"] = time.monotonic() - started
                await feed.push(listening, upsampler.push(event.audio), event.made_at)
            elif isinstance(event, Progress):
                if event.segment != segment:  # the audio from here on is the next segment's
                    if bounds is None:  # the production has read the engine's format by its first event
                        bounds = narrate.segment_bounds(request.plan, worker.narrator.engine.audio.frame_rate)
                    segment = event.segment
                    bound = bounds[segment - 1] if 0 < segment <= len(bounds) else 0.0
                    playback.begin_segment(guild_id, job.id, bound, event.made_at)
                await reporter.status(progress_line(event.segment, event.total, event.elapsed_s, event.eta_s))
            elif isinstance(event, Finished):
                result = event
        if job.cancelled or result is None:
            return None  # stopped: nothing more may reach the voice channel
        await feed.push(listening, upsampler.finish())
        request.stats["render"] = time.monotonic() - started
        return result

    async def stream(self, job: Job, worker: InferenceWorker, request: SayRequest, reporter: Reporter) -> Any:
        """Render `request` into its guild's voice stream as a job queued by another service (chat narration): the
        /say render path without a render row or outcome messages; returns the production's `Finished`."""
        return await self._render(job, worker, request, reporter)

    # -- outcome -----------------------------------------------------------------------------------------------------

    async def _follow(self, job: Job, request: SayRequest, reporter: Reporter) -> None:
        playback = self.playback
        playback.expect(request.guild_id, job.id)  # queued: the bot must not leave voice for being idle meanwhile
        try:
            await self._report(job, request, reporter)
        finally:
            playback.end(request.guild_id, job.id)  # also when it never ran (cancelled while queued)

    async def _report(self, job: Job, request: SayRequest, reporter: Reporter) -> None:
        self.job_owners[job.id] = job.user_id
        try:
            finished = await job.done
        except asyncio.CancelledError:
            self._waiting.pop(job.id, None)
            if self.closing:  # the next start marks it interrupted and tells its owner in the channel
                await reporter.done("Interrupted: I am restarting. I will post here when I am back.", None)
                return
            await self._mark(request, "cancelled")
            self.playback.skip(request.guild_id, job.id)
            await reporter.done("Stopped.", None)
            return
        except UserError as exc:
            await self._mark(request, "failed", error=str(exc))
            await reporter.done(str(exc), None)
            return
        except Exception as exc:
            await self._mark(request, "failed", error=f"{type(exc).__name__}: {exc}"[:500])
            await reporter.done(self._failure_text(job), None)
            return
        if finished is None:  # the engine ended without a master (should not happen unless stopped)
            await self._mark(request, "failed", error="the render ended without a master")
            await reporter.done(self._failure_text(job), None)
            return
        await self._deliver(request, finished, reporter)

    def _failure_text(self, job: Job) -> str:
        if job.state == "timeout":
            return (
                f"The render took longer than {self.settings.job_timeout_s:g} s and was stopped. Try a shorter script."
            )
        return "Sorry, the render failed on my side. It has been logged; please try again."

    async def _deliver(self, request: SayRequest, finished: Any, reporter: Reporter) -> None:
        """Post the master, saying it is synthetic and which voice spoke; the bookkeeping is attempted first, but
        the user gets their recording even if the database is unusable now (`_mark` logs and retries)."""
        path = finished.master_path
        await self._mark(
            request,
            "done",
            output_path=str(path),
            audio_seconds=finished.audio_seconds,
            render_seconds=request.stats.get("render"),
            first_audio_seconds=request.stats.get("first_audio"),
        )
        limit = getattr(reporter, "filesize_limit", 10 * 1024 * 1024)
        attachment = await asyncio.to_thread(attachment_for, path, limit)  # named like the master (and its sidecar)
        text = (
            f"Done: {finished.audio_seconds:.1f} s of audio in {request.stats.get('render', 0):.1f} s. "
            f"{SYNTHETIC}, voice: {voices_spoken(request)}."
        )
        if attachment is None:
            text += " The recording is too large to attach here, even as Opus; it is kept on the bot's disk."
        elif attachment.format != "wav":
            text += f" Attached as {attachment.format.upper()} to fit the upload limit."
        await reporter.done(text, attachment)

    async def _mark(self, request: SayRequest, status: str, **values: Any) -> bool:
        """Record the render's state; never raises (RenderRows.mark): the user's answer must not depend on it."""
        return await self.rows.mark(request.render_id, status, **values)

    # -- stop, skip, queue -------------------------------------------------------------------------------------------

    def stop(self, guild_id: int) -> int:
        """Silence the guild and cancel all of its jobs; returns how many jobs were cancelled."""
        for hook in self.stop_hooks:
            hook(guild_id)
        self.playback.stop(guild_id)
        return len(self.queue.cancel_where(lambda j: j.guild_id == guild_id))

    def skip(self, guild_id: int) -> bool:
        """Drop the audio playing now (and cancel its render if it is still running)."""
        playback, queue = self.playback, self.queue
        tag = playback.playing_tag(guild_id)
        running = queue.running(guild_id)
        if tag is None and not running:
            return False
        target = tag if tag is not None else running[0].id
        playback.skip(guild_id, target)
        queue.cancel_where(lambda j: j.id == target)
        return True

    def queue_lines(self, guild_id: int) -> list[str]:
        queue = self.queue
        lines = [f"▶ {j.label} by <@{j.user_id}> (rendering)" for j in queue.running(guild_id)]
        order = queue.service_order()
        lines += [f"{place}. {j.label} by <@{j.user_id}>" for place, j in enumerate(order, 1) if j.guild_id == guild_id]
        return lines

    def queue_text(self, guild_id: int) -> str:
        """/queue's answer: one message at most ('… and 37 more' for the lines that do not fit)."""
        lines = self.queue_lines(guild_id)
        return fit_lines(lines) if lines else "The queue is empty."

    async def report_interrupted(self, client: discord.Client) -> None:
        """Tell the owner of each render a restart interrupted (at start-up; never raises)."""
        await self.rows.report_interrupted(client)


def _error_text(exc: BaseException) -> str:
    """What a failed render's row keeps of its error: the user's own words for a UserError, else type and text."""
    text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
    return text[:500]


def voices_spoken(request: SayRequest) -> str:
    """'Reader', or 'Reader, with Alice and Bob' for a script with `[@name]` voices; 'the default narrator' for the
    model's own default speaker."""
    voices = getattr(request.plan, "voices", None) or {None: request.voice}
    names = []
    for voice in voices.values():
        name = voice.name if voice is not None else "the default narrator"
        if name not in names:
            names.append(name)
    return names[0] if len(names) == 1 else f"{names[0]}, with {', '.join(names[1:])}"

"""The job queue in front of the inference workers: fair across guilds, limited per user, cancellable.

Service order is round-robin over guilds (a guild that queues ten renders waits its turn behind one render of each
other guild), first-in first-out inside a guild. A user has at most one job running and `max_queued` waiting; a job
whose owner already has one running is passed over (not lost) until that one ends, so several workers never run two
jobs of one user at once. Waiting jobs are capped per user, per guild and in all; a refusal says when to try again,
from the Smart ETA of the jobs ahead. Every look at the whole queue (`service_order`, `positions`, `wait_times`) is
one pass, O(waiting jobs + guilds): a job start at 9,000 waiting must not block the event loop. Pure asyncio, no
Discord: tests drive it directly.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.durations import about
from bot.errors import QueueFull

log = logging.getLogger(__name__)

_ids = itertools.count(1)

JOB_STATES = ("queued", "running", "done", "failed", "cancelled", "timeout")


@dataclass(eq=False)
class Job:
    """One unit of GPU work. `work(job, worker)` is awaited on a worker; it should check `job.cancelled` between steps
    (compute threads read the `threading.Event`, which is safe from any thread)."""

    guild_id: int
    user_id: int
    work: Callable[[Job, Any], Awaitable[Any]]  # (job, worker) -> result
    label: str = "render"
    id: int = field(default_factory=lambda: next(_ids))
    state: str = "queued"
    cancel_event: threading.Event = field(default_factory=threading.Event)  # read by compute threads
    cancel_signal: asyncio.Event = field(default_factory=asyncio.Event)  # wakes the supervising worker at once
    done: asyncio.Future | None = None  # result of `work`, or its exception
    submitted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    on_start: Callable[[Job], None] | None = None  # runs on the loop when a worker picks the job up
    predicted_s: float | None = None  # Smart ETA: predicted compute seconds of `work`; None = unknown

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    @property
    def finished(self) -> bool:
        return self.state not in ("queued", "running")


class JobQueue:
    def __init__(
        self, max_queued_per_user: int, *, max_queued_per_guild: int | None = None, max_queued_total: int | None = None
    ) -> None:
        self.max_queued_per_user = max_queued_per_user
        self.max_queued_per_guild = max_queued_per_guild  # None: no cap (NARRATOR_MAX_QUEUED_PER_GUILD)
        self.max_queued_total = max_queued_total  # None: no cap (NARRATOR_MAX_QUEUED_TOTAL)
        self._by_guild: dict[int, collections.deque[Job]] = {}  # a guild is here iff it is in the rotation
        self._rotation: collections.deque[int] = collections.deque()  # guild ids, next to serve first
        self._running: dict[int, Job] = {}  # job id -> job
        self._waiting_by_user: collections.Counter[int] = collections.Counter()
        self._waiting_total = 0
        self._wakeup = asyncio.Event()  # set whenever the queue or the running set changes

    # -- submitting --------------------------------------------------------------------------------------------------

    def check_room(self, guild_id: int, user_id: int, workers: int = 1) -> None:
        """Raise QueueFull (saying when to try again) if a job of `user_id` in `guild_id` would be over a cap."""
        waiting = self._waiting_by_user[user_id]
        if waiting >= self.max_queued_per_user:
            raise QueueFull(
                f"You already have {waiting} renders waiting (the limit is {self.max_queued_per_user}). "
                "Wait for one to finish, or use /stop to clear yours."
            )
        in_guild = len(self._by_guild.get(guild_id, ()))
        if self.max_queued_per_guild is not None and in_guild >= self.max_queued_per_guild:
            retry = self._retry_text(self._wait_for_guild_slot(guild_id, workers))
            raise QueueFull(
                f"This server's queue is full ({in_guild} renders waiting, the limit is "
                f"{self.max_queued_per_guild}); try again in {retry}."
            )
        if self.max_queued_total is not None and self._waiting_total >= self.max_queued_total:
            retry = self._retry_text(self._wait_for_any_slot(workers))
            raise QueueFull(
                f"The queue is full ({self._waiting_total} renders waiting across all servers); try again in {retry}."
            )

    def submit(self, job: Job, workers: int = 1) -> int:
        """Queue `job`; returns its 1-based position in service order. Raises QueueFull over a cap (`check_room`);
        `workers` only sharpens the "try again in" of that refusal."""
        self.check_room(job.guild_id, job.user_id, workers)
        job.done = asyncio.get_running_loop().create_future()
        queue = self._by_guild.get(job.guild_id)
        if queue is None:
            queue = self._by_guild[job.guild_id] = collections.deque()
            self._rotation.append(job.guild_id)
        queue.append(job)
        self._waiting_by_user[job.user_id] += 1
        self._waiting_total += 1
        self._notify()
        return self._position_of_last(job.guild_id)

    def waiting_count(self, user_id: int) -> int:
        return self._waiting_by_user[user_id]

    # -- taking ------------------------------------------------------------------------------------------------------

    async def get(self) -> Job:
        """Wait for the next job in fair order whose owner has nothing running; mark it running."""
        while True:
            job = self._take()
            if job is not None:
                return job
            self._wakeup.clear()
            await self._wakeup.wait()

    def finish(self, job: Job, state: str) -> None:
        assert state in JOB_STATES, f"unknown job state {state!r}"
        job.state = state
        self._running.pop(job.id, None)
        self._notify()

    def _take(self) -> Job | None:
        busy_users = {j.user_id for j in self._running.values()}
        for _ in range(len(self._rotation)):
            guild_id = self._rotation[0]
            self._rotation.rotate(-1)  # this guild goes to the back whether or not it had a runnable job
            queue = self._by_guild.get(guild_id)
            job = next((j for j in queue or () if j.user_id not in busy_users), None)
            if job is None:
                continue
            self._unqueue(job, queue)
            job.state, job.started_at = "running", time.monotonic()
            self._running[job.id] = job
            return job
        return None

    # -- cancelling --------------------------------------------------------------------------------------------------

    def cancel(self, job: Job) -> bool:
        """Cancel one job: a queued one leaves the queue now; a running one is flagged (its worker stops it)."""
        if job.finished:
            return False
        job.cancel_event.set()
        job.cancel_signal.set()
        queue = self._by_guild.get(job.guild_id)
        if job.state == "queued" and queue is not None and job in queue:
            self._unqueue(job, queue)
            job.state = "cancelled"
            if job.done is not None and not job.done.done():
                job.done.cancel()
        self._notify()
        return True

    def cancel_where(self, predicate: Callable[[Job], bool]) -> list[Job]:
        jobs = [j for j in [*self._running.values(), *self._queued()] if predicate(j)]
        return [j for j in jobs if self.cancel(j)]

    # -- looking -----------------------------------------------------------------------------------------------------

    def running(self, guild_id: int | None = None) -> list[Job]:
        return [j for j in self._running.values() if guild_id is None or j.guild_id == guild_id]

    def service_order(self) -> list[Job]:
        """Queued jobs in the order workers will take them (ignoring the one-running-per-user deferral): one
        round-robin pass over the guilds' queues, O(jobs + guilds)."""
        order: list[Job] = []
        rounds = [iter(self._by_guild[g]) for g in self._rotation]
        while rounds:
            still = []
            for guild_jobs in rounds:
                job = next(guild_jobs, None)
                if job is not None:
                    order.append(job)
                    still.append(guild_jobs)
            rounds = still
        return order

    def positions(self) -> dict[int, int]:
        """{job id: 1-based place in the service order} for every waiting job, in one pass."""
        return {job.id: place for place, job in enumerate(self.service_order(), start=1)}

    def position(self, job: Job) -> int:
        """1-based place in the service order; 0 once it runs or ended."""
        return self.positions().get(job.id, 0) if job.state == "queued" else 0

    def snapshot(self, workers: int = 1, now: float | None = None) -> list[tuple[Job, int, float | None]]:
        """(job, 1-based position, predicted seconds until it starts) of every waiting job in service order, in one
        pass. The wait is what is left of the running jobs' predictions plus the predictions of the jobs ahead,
        shared over `workers` (exact for one worker, an even-share estimate for several); None from the first job
        counted that has no prediction (e.g. a voice design) on: no promise behind it."""
        ahead = self._running_left(now)
        share = 1.0 / max(1, workers)
        out: list[tuple[Job, int, float | None]] = []
        for place, job in enumerate(self.service_order(), start=1):
            out.append((job, place, None if ahead is None else ahead * share))
            if ahead is not None:
                ahead = None if job.predicted_s is None else ahead + job.predicted_s
        return out

    def wait_times(self, workers: int = 1, now: float | None = None) -> dict[int, float | None]:
        """{job id: predicted seconds until it starts} for every waiting job (`snapshot`)."""
        return {job.id: wait_s for job, _, wait_s in self.snapshot(workers, now)}

    def wait_seconds(self, job: Job, workers: int = 1, now: float | None = None) -> float | None:
        """`wait_times` of one job; 0.0 once it runs or ended."""
        if job.state != "queued":
            return 0.0
        return self.wait_times(workers, now).get(job.id, 0.0)

    def __len__(self) -> int:
        return self._waiting_total

    def _queued(self) -> list[Job]:
        return [j for q in self._by_guild.values() for j in q]

    def _unqueue(self, job: Job, queue: collections.deque[Job]) -> None:
        queue.remove(job)
        self._waiting_by_user[job.user_id] -= 1
        if not self._waiting_by_user[job.user_id]:
            del self._waiting_by_user[job.user_id]
        self._waiting_total -= 1
        if not queue:
            self._by_guild.pop(job.guild_id)
            self._rotation.remove(job.guild_id)

    def _position_of_last(self, guild_id: int) -> int:
        """Place of `guild_id`'s newest job without building the order (O(guilds)): every guild serves one job per
        round, so it comes after min(len, depth) jobs of each guild plus, in its own round, the guilds ahead."""
        depth = len(self._by_guild[guild_id]) - 1
        place = 1
        reached = False
        for other in self._rotation:
            reached = reached or other == guild_id
            length = len(self._by_guild[other])
            place += min(length, depth) + (1 if not reached and length > depth else 0)
        return place

    def _running_left(self, now: float | None) -> float | None:
        """Predicted seconds left of the running jobs together; None if one has no prediction."""
        now = time.monotonic() if now is None else now
        total = 0.0
        for job in self._running.values():
            if job.predicted_s is None:
                return None
            elapsed = now - job.started_at if job.started_at is not None else 0.0
            total += max(0.0, job.predicted_s - elapsed)
        return total

    def _wait_for_guild_slot(self, guild_id: int, workers: int) -> float | None:
        """Seconds until the guild's first waiting job starts (which frees one of its places): it is served in the
        first round, after the first job of each guild ahead of it in the rotation. O(guilds)."""
        ahead = self._running_left(None)
        for other in self._rotation:
            if other == guild_id or ahead is None:
                break
            first = self._by_guild[other][0].predicted_s
            ahead = None if first is None else ahead + first
        return None if ahead is None else ahead / max(1, workers)

    def _wait_for_any_slot(self, workers: int) -> float | None:
        """Seconds until the first waiting job starts (a running one ends)."""
        left = self._running_left(None)
        return None if left is None else left / max(1, workers)

    @staticmethod
    def _retry_text(wait_s: float | None) -> str:
        return "a few minutes" if wait_s is None else f"about {about(wait_s)}"

    def _notify(self) -> None:
        self._wakeup.set()

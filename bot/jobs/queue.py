"""The job queue in front of the inference workers: fair across guilds, limited per user, cancellable.

Service order is round-robin over guilds (a guild that queues ten renders waits its turn behind one render of each
other guild), first-in first-out inside a guild. A user has at most one job running and `max_queued` waiting; a job
whose owner already has one running is passed over (not lost) until that one ends, so several workers never run two
jobs of one user at once. Pure asyncio, no Discord: tests drive it directly.
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
    def __init__(self, max_queued_per_user: int) -> None:
        self.max_queued_per_user = max_queued_per_user
        self._by_guild: dict[int, collections.deque[Job]] = {}
        self._rotation: collections.deque[int] = collections.deque()  # guild ids, next to serve first
        self._running: dict[int, Job] = {}  # job id -> job
        self._wakeup = asyncio.Event()  # set whenever the queue or the running set changes

    # -- submitting --------------------------------------------------------------------------------------------------

    def submit(self, job: Job) -> int:
        """Queue `job`; returns its 1-based position in service order. Raises QueueFull over the per-user limit."""
        waiting = sum(1 for j in self._queued() if j.user_id == job.user_id)
        if waiting >= self.max_queued_per_user:
            raise QueueFull(
                f"You already have {waiting} renders waiting (the limit is {self.max_queued_per_user}). "
                "Wait for one to finish, or use /stop to clear yours."
            )
        job.done = asyncio.get_running_loop().create_future()
        self._by_guild.setdefault(job.guild_id, collections.deque()).append(job)
        if job.guild_id not in self._rotation:
            self._rotation.append(job.guild_id)
        self._notify()
        return self.position(job)

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
            queue.remove(job)
            if not queue:
                self._by_guild.pop(guild_id)
                self._rotation.remove(guild_id)
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
        if queue is not None and job in queue:
            queue.remove(job)
            if not queue:
                self._by_guild.pop(job.guild_id)
                self._rotation.remove(job.guild_id)
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
        """Queued jobs in the order workers will take them (ignoring the one-running-per-user deferral)."""
        queues = {g: list(q) for g, q in self._by_guild.items()}
        order: list[Job] = []
        rotation = list(self._rotation)
        while any(queues.values()):
            for guild_id in rotation:
                if queues.get(guild_id):
                    order.append(queues[guild_id].pop(0))
        return order

    def position(self, job: Job) -> int:
        """1-based place in the service order; 0 once it runs or ended."""
        order = self.service_order()
        return order.index(job) + 1 if job in order else 0

    def wait_seconds(self, job: Job, workers: int = 1, now: float | None = None) -> float | None:
        """Predicted seconds until `job` starts: what is left of the running jobs' predictions plus the predictions
        of the jobs ahead of it in service order, shared over `workers` (exact for one worker, an even-share estimate
        for several). 0.0 once it runs or ended; None when a job counted has no prediction (e.g. a voice design)."""
        order = self.service_order()
        if job not in order:
            return 0.0
        now = time.monotonic() if now is None else now
        total = 0.0
        for other in [*self._running.values(), *order[: order.index(job)]]:
            if other.predicted_s is None:
                return None
            elapsed = now - other.started_at if other.started_at is not None else 0.0
            total += max(0.0, other.predicted_s - elapsed)
        return total / max(1, workers)

    def __len__(self) -> int:
        return sum(len(q) for q in self._by_guild.values())

    def _queued(self) -> list[Job]:
        return [j for q in self._by_guild.values() for j in q]

    def _notify(self) -> None:
        self._wakeup.set()

"""Keeping waiting users told their place in the queue, within Discord's rate limits.

Every job start moves every waiting render up, so telling each of them at once would be one message edit per
waiting job per start (thousands of requests, the bot rate-limited everywhere). Instead a job start only calls
`changed()` (O(1)); one pump task then reads the positions and waits of all waiting renders in one pass (`update`,
at most once per `MIN_REFRESH_S` however many jobs started), marks a message due only when its position changed or
its wait moved by more than `ETA_CHANGE_SHARE` and `ETA_CHANGE_S`, and edits the due messages front of the queue
first, at most `QUEUE_EDITS_PER_S` in all (spread evenly) and never twice within `MIN_QUEUE_EDIT_INTERVAL_S` for one
message. A due message keeps only its newest text: the renders far back are edited seldom, never in a burst.
O(waiting) per refresh, O(log waiting) per edit.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from bot.services.progress import Reporter, queued_line

log = logging.getLogger(__name__)

# The bot's whole budget for queue-position edits (Discord allows about 50 requests/s for everything the bot does,
# and each interaction message only a few edits per few seconds), and the least time between two edits of one.
QUEUE_EDITS_PER_S = 5.0
MIN_QUEUE_EDIT_INTERVAL_S = 2.0
# An ETA change worth an edit: more than this share of the wait shown, and more than this many seconds.
ETA_CHANGE_SHARE = 0.2
ETA_CHANGE_S = 5.0
MIN_REFRESH_S = 1.0  # the least time between two passes over the whole queue

Spawn = Callable[[Coroutine[Any, Any, Any]], asyncio.Task]
Listing = Callable[[], Iterable[tuple[Any, Reporter, int, float | None]]]  # every waiting render, in service order


def eta_moved(shown_s: float | None, now_s: float | None) -> bool:
    """Whether a wait changed enough to tell: known <-> unknown, or by > ETA_CHANGE_SHARE and > ETA_CHANGE_S."""
    if shown_s is None or now_s is None:
        return (shown_s is None) != (now_s is None)
    change = abs(now_s - shown_s)
    return change > ETA_CHANGE_S and change > ETA_CHANGE_SHARE * shown_s


@dataclass
class _Waiting:
    job: Any  # bot.jobs.queue.Job
    reporter: Reporter
    position: int  # what the user was last told (0: nothing yet)
    wait_s: float | None
    last_edit: float = -math.inf
    due: tuple[int, float | None] | None = None  # (position, wait) not shown yet


class QueueBoard:
    def __init__(
        self,
        listing: Listing,
        spawn: Spawn | None = None,
        edits_per_s: float = QUEUE_EDITS_PER_S,
        min_interval_s: float = MIN_QUEUE_EDIT_INTERVAL_S,
    ) -> None:
        self.listing = listing  # (job, reporter, position, wait) of every waiting render
        self.edits_per_s = edits_per_s
        self.min_interval_s = min_interval_s
        self.edits = 0  # edits asked for so far (tests, bench)
        self.refreshes = 0  # passes over the queue so far
        self._spawn = spawn or (lambda coro: asyncio.get_running_loop().create_task(coro))
        self._stale = False
        self._last_refresh = -math.inf
        self._entries: dict[int, _Waiting] = {}  # job id -> what its user saw
        self._heap: list[tuple[int, int]] = []  # (due position, job id); stale items are skipped when popped
        self._pump: asyncio.Task | None = None
        self._woken = asyncio.Event()

    def told(self, job: Any, reporter: Reporter, position: int, wait_s: float | None) -> None:
        """Record a queued line sent directly (the first answer of /say): the next edit is measured from it."""
        self._entries[job.id] = _Waiting(job, reporter, position, wait_s, last_edit=time.monotonic())

    def forget(self, job_id: int) -> None:
        self._entries.pop(job_id, None)

    def changed(self) -> None:
        """The queue moved (a job started): the pump refreshes every waiting render's line soon. O(1)."""
        self._stale = True
        self._wake()

    def refresh(self) -> None:
        """One pass over the queue now (`update` from `listing`)."""
        self._stale, self._last_refresh = False, time.monotonic()
        self.refreshes += 1
        self.update(self.listing())

    def update(self, waiting: Iterable[tuple[Any, Reporter, int, float | None]]) -> None:
        """Every waiting render's (job, reporter, position, wait), in one pass; renders not listed are forgotten."""
        old, entries, heap = self._entries, {}, []
        for job, reporter, position, wait_s in waiting:
            entry = old.get(job.id)
            if entry is None:
                entry = _Waiting(job, reporter, 0, None)
            entries[job.id] = entry
            if position != entry.position or (wait_s != entry.wait_s and eta_moved(entry.wait_s, wait_s)):
                entry.due = (position, wait_s)
                heap.append((position, job.id))
            else:
                entry.due = None  # (again) what the user already sees
        heapq.heapify(heap)
        self._entries, self._heap = entries, heap
        if heap:
            self._wake()

    def _wake(self) -> None:
        self._woken.set()
        if self._pump is None or self._pump.done():
            self._pump = self._spawn(self._run())

    async def _run(self) -> None:
        """The pump: refresh when the queue moved (at most once per MIN_REFRESH_S), send due edits within the
        budget; ends when nothing is due or stale (the next `changed` or `update` starts it again)."""
        gap = 1.0 / self.edits_per_s
        while self._stale or self._heap:
            now = time.monotonic()
            if self._stale and now - self._last_refresh >= MIN_REFRESH_S:
                self.refresh()
            entry, soonest = self._pop_due(now)
            if entry is not None:
                self._show(entry, now)
                await asyncio.sleep(gap)
                continue
            until = [t for t in (soonest, self._last_refresh + MIN_REFRESH_S if self._stale else None) if t]
            if not until:
                return
            self._woken.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), timeout=max(gap, min(until) - now))

    def _pop_due(self, now: float) -> tuple[_Waiting | None, float | None]:
        """The due message nearest the front that may be edited now, or (None, when the first held one may)."""
        held: list[tuple[int, int]] = []
        found = None
        while self._heap:
            position, job_id = heapq.heappop(self._heap)
            entry = self._entries.get(job_id)
            if entry is None or entry.due is None or entry.due[0] != position or entry.job.state != "queued":
                continue  # stale: shown since, superseded by a later update, or the job left the queue
            if now - entry.last_edit < self.min_interval_s:
                held.append((position, job_id))
                continue
            found = entry
            break
        for item in held:
            heapq.heappush(self._heap, item)
        soonest = min((self._entries[j].last_edit for _, j in held), default=None)
        return found, None if soonest is None else soonest + self.min_interval_s

    def _show(self, entry: _Waiting, now: float) -> None:
        entry.position, entry.wait_s = entry.due
        entry.due, entry.last_edit = None, now
        self.edits += 1
        self._spawn(entry.reporter.status(queued_line(entry.position, entry.wait_s, entry.job.predicted_s)))

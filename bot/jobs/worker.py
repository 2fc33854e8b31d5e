"""The inference worker: one asyncio task per GPU, the only code that drives that GPU's engine.

Jobs come from the shared `JobQueue`. A worker runs up to `slots` jobs at once (its engine's `max_streams`: the rows
of its batched decode step; 1 for an engine that serves one render at a time). Each job's `work(job, worker)`
coroutine runs on the event loop and pushes its blocking model steps to `worker.compute(fn, ...)`, which runs them
on one of the worker's `slots` compute threads (the loop never blocks; an engine serving several streams is
thread-safe by the Engine contract). `worker.narrator` is the
`Narrator` over this worker's engine, bound once by the composition root (`bot.app`). A job ends when its work returns,
raises, is cancelled (`/stop`, `/skip`: the worker stops waiting at once, and the compute thread sees
`job.cancel_event` at its next step) or runs past `job_timeout_s`.

A job whose compute step makes no progress for `stuck_step_s` is reported with the step's stack and fails with
`StuckStep` (a sentence the user sees); the worker moves to fresh compute threads, so the next step of any job runs on
a new one. A thread cannot be killed: the stuck one is abandoned, and stops at its next step if it ever wakes (its job
is cancelled). Progress is either signal: the job's cancel event was polled (the engine asks "should I stop?" before
every frame), or the step's Python stack moved (a long step that polls nothing, e.g. a voice design, calls into torch
all the time). A hung device call or a deadlock shows neither.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from bot.errors import UserError
from bot.jobs.queue import Job, JobQueue

if TYPE_CHECKING:
    from bot.narration.narrator import Narrator

log = logging.getLogger(__name__)

T = TypeVar("T")
CLOSE_WAIT_S = 5.0  # at shutdown, how long the running job may take to stop before the worker is torn down
STUCK_POLL_S = 1.0  # how often a running step's progress is looked at
STACK_DEPTH = 12  # frames compared (from the innermost) to tell a moving step from a stuck one


class StuckStep(UserError):
    """The model stopped making progress; the message is for the user."""


class PolledEvent(threading.Event):
    """A job's cancel event that counts how often it is polled: each poll is a sign of progress."""

    def __init__(self) -> None:
        super().__init__()
        self.polls = 0

    def is_set(self) -> bool:
        self.polls += 1
        return super().is_set()


class JobTimeout(Exception):
    pass


_JOB: contextvars.ContextVar[Job | None] = contextvars.ContextVar("job", default=None)  # the job a task works for


class InferenceWorker:
    def __init__(
        self,
        queue: JobQueue,
        *,
        device: str,
        job_timeout_s: float,
        name: str = "gpu0",
        slots: int = 1,
        stuck_step_s: float | None = None,
    ) -> None:
        if slots < 1:
            raise ValueError(f"a worker needs at least one slot, got {slots}")
        self.queue = queue
        self.device = device
        self.name = name
        self.job_timeout_s = job_timeout_s
        self.slots = slots
        self.running: dict[int, Job] = {}  # job id -> job, in start order
        self.narrator: Narrator | None = None  # bound by `bind`; jobs that need the model use it
        self._executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix=f"compute-{name}")
        self._in_thread: dict[int, set[concurrent.futures.Future]] = {}  # job id -> its steps still on a thread
        self.stuck_step_s = stuck_step_s  # None: never judged stuck (the job timeout still applies)
        self.threads_replaced = 0
        self._step_threads: dict[int, int] = {}  # job id -> ident of the thread running its step now
        self._step_counts: dict[int, int] = {}  # job id -> steps begun + ended (changes with every step)
        self._task: asyncio.Task | None = None
        self._jobs: set[asyncio.Task] = set()

    @property
    def current(self) -> Job | None:
        """The oldest running job (None when idle)."""
        return next(iter(self.running.values()), None)

    @property
    def full(self) -> bool:
        return len(self.running) >= self.slots

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    def bind(self, narrator: Narrator) -> None:
        """The narrator (over this worker's engine) whose blocking steps run on this worker's thread."""
        self.narrator = narrator

    async def start_engine(self) -> None:
        """Load and warm up every checkpoint of this worker's engine, on its compute thread."""
        if self.narrator is not None:
            await self.compute(self.narrator.engine.start)

    def start(self) -> None:
        assert self._task is None, "worker already started"
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"worker-{self.name}")

    async def close(self) -> None:
        """Cancel the running jobs, stop taking jobs, and wait for the compute threads to finish their steps."""
        for job in list(self.running.values()):
            self.queue.cancel(job)  # the supervisor ends it, resolves its future and drains its thread
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle(), CLOSE_WAIT_S)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._jobs):
            task.cancel()
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)

    # -- what jobs call ----------------------------------------------------------------------------------------------

    async def compute(self, fn: Callable[..., T], *args: Any) -> T:
        """Run one blocking model step on one of this worker's compute threads."""
        job = _JOB.get()
        future = self._executor.submit(self._step, job.id if job is not None else None, fn, args)
        if job is not None:  # remembered until it ends, so a cancelled job's step is waited for before it is done
            steps = self._in_thread.setdefault(job.id, set())
            steps.add(future)
            future.add_done_callback(steps.discard)
        return await asyncio.wrap_future(future)

    def _step(self, job_id: int | None, fn: Callable[..., T], args: tuple) -> T:
        if job_id is not None:
            self._step_threads[job_id] = threading.get_ident()
            self._step_counts[job_id] = self._step_counts.get(job_id, 0) + 1
        try:
            return fn(*args)
        finally:
            if job_id is not None:
                self._step_threads.pop(job_id, None)
                self._step_counts[job_id] = self._step_counts.get(job_id, 0) + 1

    # -- the loop ----------------------------------------------------------------------------------------------------

    async def _loop(self) -> None:
        free = asyncio.Semaphore(self.slots)
        while True:
            await free.acquire()
            try:
                job = await self.queue.get()
            except BaseException:
                free.release()
                raise
            self.running[job.id] = job
            task = asyncio.get_running_loop().create_task(self._serve(job, free), name=f"serve-{job.id}")
            self._jobs.add(task)
            task.add_done_callback(self._jobs.discard)

    async def _serve(self, job: Job, free: asyncio.Semaphore) -> None:
        try:
            await self._run(job)
        finally:
            self.running.pop(job.id, None)
            free.release()
            if job.done is not None and not job.done.done():  # the worker itself was cancelled mid-job
                job.done.cancel()

    async def _idle(self) -> None:
        while self.running:
            await asyncio.sleep(0.01)

    async def _run(self, job: Job) -> None:
        if not isinstance(job.cancel_event, PolledEvent):  # count its polls (set already if cancelled meanwhile)
            polled = PolledEvent()
            if job.cancel_event.is_set():
                polled.set()
            job.cancel_event = polled
        if job.on_start is not None:
            try:
                job.on_start(job)
            except Exception:
                log.exception("on_start of job %s failed", job.id)
        task = asyncio.get_running_loop().create_task(self._work(job), name=f"job-{job.id}")
        state, outcome = await self._supervise(job, task)
        await self._drain_steps(job)
        self._step_counts.pop(job.id, None)
        self.queue.finish(job, state)
        self._resolve(job, outcome)
        log.info("job %s (%s, guild %s) ended: %s", job.id, job.label, job.guild_id, state)

    async def _work(self, job: Job) -> Any:
        _JOB.set(job)  # this task's context (and every task it starts) computes for `job`
        return await job.work(job, self)

    async def _supervise(self, job: Job, task: asyncio.Task) -> tuple[str, Any]:
        """Wait for the work, a cancel request or the deadline; returns (state, result or exception or None)."""
        cancel_waiter = asyncio.ensure_future(job.cancel_signal.wait())
        stuck_waiter = asyncio.ensure_future(self._until_stuck(job))
        try:
            await asyncio.wait(
                {task, cancel_waiter, stuck_waiter}, timeout=self.job_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            cancel_waiter.cancel()
            stuck_waiter.cancel()
        if stuck_waiter.done() and not stuck_waiter.cancelled() and not task.done() and not job.cancelled:
            return await self._abandon_stuck(job, task)
        if job.cancelled or not task.done():
            timed_out = not job.cancelled
            job.cancel_event.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            if timed_out:
                return "timeout", JobTimeout(f"the render took longer than {self.job_timeout_s:g} s")
            return "cancelled", None
        if task.cancelled():
            return "cancelled", None
        error = task.exception()
        if error is not None:
            log.error("job %s failed", job.id, exc_info=error)
            return "failed", error
        return "done", task.result()

    # -- stuck steps -------------------------------------------------------------------------------------------------

    def _progress_mark(self, job: Job) -> tuple | None:
        """What changes while the job's step makes progress (None: no step of it runs, so nothing can be stuck)."""
        ident = self._step_threads.get(job.id)
        if ident is None:
            return None
        frame, stack = sys._current_frames().get(ident), []
        while frame is not None and len(stack) < STACK_DEPTH:
            stack.append((id(frame.f_code), frame.f_lasti))
            frame = frame.f_back
        return self._step_counts.get(job.id), getattr(job.cancel_event, "polls", 0), tuple(stack)

    async def _until_stuck(self, job: Job) -> None:
        """Returns once the job's compute step has shown no progress for `stuck_step_s` (never, if that is None)."""
        if self.stuck_step_s is None:
            await asyncio.Event().wait()
        loop = asyncio.get_running_loop()
        last, since = None, loop.time()
        while True:
            await asyncio.sleep(min(STUCK_POLL_S, self.stuck_step_s / 4))
            mark = self._progress_mark(job)
            if mark is None or mark != last:
                last, since = mark, loop.time()
            elif loop.time() - since >= self.stuck_step_s:
                return

    async def _abandon_stuck(self, job: Job, task: asyncio.Task) -> tuple[str, Any]:
        frame = sys._current_frames().get(self._step_threads.get(job.id, -1))
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)"
        log.error("job %s (%s): its compute step made no progress for %g s; %s moves to fresh compute threads. "
                  "The step's stack:\n%s", job.id, job.label, self.stuck_step_s, self.name, stack)  # fmt: skip
        job.cancel_event.set()  # if the abandoned thread ever wakes, it stops at its next step
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        self._in_thread.pop(job.id, None)  # never waited for: it may not return
        old, self._executor = (
            self._executor,
            ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix=f"compute-{self.name}"),
        )
        old.shutdown(wait=False)  # other jobs' steps already there finish; their next steps go to the new threads
        self.threads_replaced += 1
        return "failed", StuckStep(
            f"The voice model stopped making progress for {self.stuck_step_s:g} s, so I stopped this job; the next "
            "one starts fresh. Please try again."
        )

    @staticmethod
    def _resolve(job: Job, outcome: Any) -> None:
        if job.done is None or job.done.done():
            return
        if job.state == "cancelled":
            job.done.cancel()
        elif isinstance(outcome, BaseException):
            job.done.set_exception(outcome)
        else:
            job.done.set_result(outcome)

    async def _drain_steps(self, job: Job) -> None:
        # A cancelled job's step may still run on its thread (it stops at its next frame); wait for it, so the slot
        # it frees is really free and the job's files are settled when it counts as ended.
        steps = self._in_thread.pop(job.id, set())
        if steps:
            await asyncio.wait([asyncio.wrap_future(f) for f in steps])


def start_workers(workers: Sequence[InferenceWorker]) -> None:
    # The model's Python frame loop holds the GIL between torch calls; hand it over every 1 ms (default 5 ms)
    # so the voice player thread sends each 20 ms packet on time.
    sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
    if any(w.device == "cpu" for w in workers):
        reserve_a_core_for_voice()
    for worker in workers:
        worker.start()
    log.info("%d inference worker(s): %s", len(workers), ", ".join(w.device for w in workers))


def reserve_a_core_for_voice() -> None:
    """On CPU inference, leave one core to the event loop and the voice player thread: a starved player sends its
    20 ms packets late and then in bursts."""
    import torch

    cores = os.cpu_count() or 1
    if cores > 1 and torch.get_num_threads() > cores - 1:
        torch.set_num_threads(cores - 1)
        log.info("CPU inference: torch uses %d of %d cores, one is kept for voice", cores - 1, cores)

"""The inference worker: one asyncio task per GPU, the only code that drives that GPU's engine.

Jobs come from the shared `JobQueue`. A worker runs up to `slots` jobs at once (its engine's `max_streams`: the rows
of its batched decode step; 1 for an engine that serves one render at a time). Each job's `work(job, worker)`
coroutine runs on the event loop and pushes its blocking model steps to `worker.compute(fn, ...)`, which runs them
on one of the worker's `slots` compute threads (the loop never blocks; an engine serving several streams is
thread-safe by the Engine contract). `worker.narrator` is the
`Narrator` over this worker's engine, bound once by the composition root (`bot.app`). A job ends when its work returns,
raises, is cancelled (`/stop`, `/skip`: the worker stops waiting at once, and the compute thread sees
`job.cancel_event` at its next step) or runs past `job_timeout_s`.
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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from bot.jobs.queue import Job, JobQueue

if TYPE_CHECKING:
    from bot.narration.narrator import Narrator

log = logging.getLogger(__name__)

T = TypeVar("T")
COMPUTE_NICE = 10
CLOSE_WAIT_S = 5.0  # at shutdown, how long the running job may take to stop before the worker is torn down


def yield_cpu_to_voice() -> None:
    """Lower the compute thread's scheduling priority (Linux: per-thread nice +10), so that on a busy CPU the voice
    player threads, which must send a packet every 20 ms, run first; the model just takes a little longer."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), COMPUTE_NICE)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: the default priority is fine
        log.debug("compute thread keeps its priority: %s", exc)


class JobTimeout(Exception):
    pass


_JOB: contextvars.ContextVar[Job | None] = contextvars.ContextVar("job", default=None)  # the job a task works for


class InferenceWorker:
    def __init__(
        self, queue: JobQueue, *, device: str, job_timeout_s: float, name: str = "gpu0", slots: int = 1
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
        self._executor = ThreadPoolExecutor(
            max_workers=slots, thread_name_prefix=f"compute-{name}", initializer=yield_cpu_to_voice
        )
        self._in_thread: dict[int, set[concurrent.futures.Future]] = {}  # job id -> its steps still on a thread
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
        future = self._executor.submit(fn, *args)
        job = _JOB.get()
        if job is not None:  # remembered until it ends, so a cancelled job's step is waited for before it is done
            steps = self._in_thread.setdefault(job.id, set())
            steps.add(future)
            future.add_done_callback(steps.discard)
        return await asyncio.wrap_future(future)

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
        if job.on_start is not None:
            try:
                job.on_start(job)
            except Exception:
                log.exception("on_start of job %s failed", job.id)
        task = asyncio.get_running_loop().create_task(self._work(job), name=f"job-{job.id}")
        state, outcome = await self._supervise(job, task)
        await self._drain_steps(job)
        self.queue.finish(job, state)
        self._resolve(job, outcome)
        log.info("job %s (%s, guild %s) ended: %s", job.id, job.label, job.guild_id, state)

    async def _work(self, job: Job) -> Any:
        _JOB.set(job)  # this task's context (and every task it starts) computes for `job`
        return await job.work(job, self)

    async def _supervise(self, job: Job, task: asyncio.Task) -> tuple[str, Any]:
        """Wait for the work, a cancel request or the deadline; returns (state, result or exception or None)."""
        cancel_waiter = asyncio.ensure_future(job.cancel_signal.wait())
        try:
            await asyncio.wait({task, cancel_waiter}, timeout=self.job_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancel_waiter.cancel()
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

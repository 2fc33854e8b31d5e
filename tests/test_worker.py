from __future__ import annotations

import asyncio
import threading
import time

import pytest

from bot.errors import QueueFull
from bot.jobs.queue import Job, JobQueue
from bot.jobs.worker import InferenceWorker, JobTimeout

pytestmark = pytest.mark.asyncio


def recorder(log: list, delay: float = 0.0):
    async def work(job: Job, worker: InferenceWorker) -> str:
        log.append((job.guild_id, job.user_id, job.label))
        if delay:
            await worker.compute(time.sleep, delay)
        return job.label

    return work


async def test_round_robin_across_guilds_fifo_inside() -> None:
    queue = JobQueue(max_queued_per_user=10)
    order: list = []
    # guild 1 floods the queue first, then guilds 2 and 3 queue one each
    jobs = [Job(1, 10 + i, recorder(order), label=f"g1-{i}") for i in range(4)]
    jobs += [Job(2, 20, recorder(order), label="g2"), Job(3, 30, recorder(order), label="g3")]
    positions = [queue.submit(j) for j in jobs]
    assert positions == [1, 2, 3, 4, 2, 3]  # a newcomer guild jumps ahead of a flood
    assert [j.label for j in queue.service_order()] == ["g1-0", "g2", "g3", "g1-1", "g1-2", "g1-3"]
    worker = InferenceWorker(queue, device="cpu", job_timeout_s=5)
    worker.start()
    results = await asyncio.gather(*(j.done for j in jobs))
    await worker.close()
    assert [label for *_, label in order] == ["g1-0", "g2", "g3", "g1-1", "g1-2", "g1-3"]
    assert results == [j.label for j in jobs]
    assert all(j.state == "done" for j in jobs)


async def test_per_user_limit_and_clear_message() -> None:
    queue = JobQueue(max_queued_per_user=2)
    queue.submit(Job(1, 7, recorder([])))
    queue.submit(Job(1, 7, recorder([])))
    with pytest.raises(QueueFull, match="limit is 2"):
        queue.submit(Job(1, 7, recorder([])))
    assert queue.submit(Job(1, 8, recorder([]))) == 3  # someone else is not affected


async def test_one_running_job_per_user_even_with_two_workers() -> None:
    queue = JobQueue(max_queued_per_user=5)
    running: set[int] = set()
    overlaps: list[int] = []

    async def work(job: Job, worker: InferenceWorker) -> None:
        if job.user_id in running:
            overlaps.append(job.user_id)
        running.add(job.user_id)
        await asyncio.sleep(0.05)
        running.discard(job.user_id)

    jobs = [Job(1, 7, work), Job(2, 7, work), Job(3, 8, work)]
    for job in jobs:
        queue.submit(job)
    workers = [InferenceWorker(queue, device="cpu", job_timeout_s=5, name=f"w{i}") for i in range(2)]
    for w in workers:
        w.start()
    await asyncio.gather(*(j.done for j in jobs))
    for w in workers:
        await w.close()
    assert overlaps == []


async def test_cancel_running_job_stops_fast_and_next_job_runs() -> None:
    queue = JobQueue(max_queued_per_user=5)
    steps = []
    seen_cancel = threading.Event()

    def slow_step(job: Job) -> None:
        for _ in range(100):  # a "model" loop that checks the flag between frames
            if job.cancel_event.is_set():
                seen_cancel.set()
                return
            time.sleep(0.01)
            steps.append(1)

    async def long_work(job: Job, worker: InferenceWorker) -> None:
        for _ in range(10):
            await worker.compute(slow_step, job)

    order: list = []
    first, second = Job(1, 1, long_work), Job(1, 2, recorder(order), label="next")
    queue.submit(first)
    queue.submit(second)
    worker = InferenceWorker(queue, device="cpu", job_timeout_s=30)
    worker.start()
    while first.state != "running":
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    t0 = time.perf_counter()
    assert queue.cancel(first)
    with pytest.raises(asyncio.CancelledError):
        await first.done
    assert time.perf_counter() - t0 < 0.2
    assert await second.done == "next"
    assert seen_cancel.is_set() and first.state == "cancelled"
    await worker.close()


async def test_cancel_queued_job_never_runs_and_cancel_where_filters() -> None:
    queue = JobQueue(max_queued_per_user=5)
    order: list = []
    jobs = [Job(1, 1, recorder(order), label="a"), Job(2, 2, recorder(order), label="b"), Job(1, 3, recorder(order))]
    for job in jobs:
        queue.submit(job)
    cancelled = queue.cancel_where(lambda j: j.guild_id == 1)
    assert cancelled == [jobs[0], jobs[2]] and len(queue) == 1
    worker = InferenceWorker(queue, device="cpu", job_timeout_s=5)
    worker.start()
    assert await jobs[1].done == "b"
    await worker.close()
    assert [label for *_, label in order] == ["b"]
    assert not queue.cancel(jobs[0])  # already ended


async def test_timeout_and_failure_are_reported_and_worker_goes_on() -> None:
    queue = JobQueue(max_queued_per_user=5)

    async def hangs(job: Job, worker: InferenceWorker) -> None:
        await asyncio.sleep(10)

    async def breaks(job: Job, worker: InferenceWorker) -> None:
        raise RuntimeError("model exploded")

    order: list = []
    jobs = [Job(1, 1, hangs), Job(1, 2, breaks), Job(1, 3, recorder(order), label="ok")]
    for job in jobs:
        queue.submit(job)
    worker = InferenceWorker(queue, device="cpu", job_timeout_s=0.2)
    worker.start()
    with pytest.raises(JobTimeout):
        await jobs[0].done
    with pytest.raises(RuntimeError, match="exploded"):
        await jobs[1].done
    assert await jobs[2].done == "ok"
    await worker.close()
    assert [j.state for j in jobs] == ["timeout", "failed", "done"]


async def test_compute_runs_off_the_loop_on_one_thread() -> None:
    queue = JobQueue(max_queued_per_user=5)
    worker = InferenceWorker(queue, device="cpu", job_timeout_s=5)
    names = {await worker.compute(lambda: threading.current_thread().name) for _ in range(5)}
    assert len(names) == 1 and names.pop() != threading.current_thread().name
    await worker.close()


async def test_a_worker_with_two_slots_runs_two_users_at_once_and_waits_for_a_cancelled_step() -> None:
    queue = JobQueue(max_queued_per_user=5)
    both_running = asyncio.Event()
    inside: set[int] = set()
    step_finished = threading.Event()

    async def work(job: Job, worker: InferenceWorker) -> None:
        inside.add(job.user_id)
        if len(inside) == 2:
            both_running.set()
        await worker.compute(lambda: (time.sleep(0.3), step_finished.set()))

    worker = InferenceWorker(queue, device="cpu", job_timeout_s=5, slots=2)
    worker.start()
    first, second, third = Job(1, 10, work), Job(2, 20, work), Job(1, 30, work)
    for job in (first, second, third):
        queue.submit(job)
    await asyncio.wait_for(both_running.wait(), 5)
    assert worker.full and third.state == "queued"  # two slots, two running: the third waits
    queue.cancel(first)
    with pytest.raises(asyncio.CancelledError):
        await first.done
    assert step_finished.is_set()  # the cancelled job ends only once its thread step has returned
    await asyncio.wait_for(asyncio.gather(second.done, third.done), 5)
    await worker.close()

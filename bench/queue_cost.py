"""Event-loop time of one job start with thousands of renders waiting: the queue and /say service now vs before.

    python bench/queue_cost.py [--sizes 1000 3000 9000] [--starts 5] [--old-starts 1]

(as a module: run as a file, this file would shadow the standard library's `queue` that asyncio imports)

A job start is what a worker does on the event loop when it takes a render: `JobQueue.get()` and the job's
`on_start` (the /say service's `_started`), then the callbacks that run at once. Measured on the real services
(`bot.app.Services`, default settings but the queue caps raised), the queue filled the way /say fills it without the
database row. Baseline, in the same run on the same queue: the algorithm before issue 12, re-implemented here, which
recomputed each waiting job's position and wait from a fresh service order and spawned one message edit per waiting
job. Prints one JSON line: CPU ms of the event-loop thread per start (minimum over the runs; CPU, not wall time, so a
shared machine's waits are not counted) for each size; for the new code the start itself, the board's pass over
the queue that a start sets off (at most once a second, however many jobs start) and their sum (`new_ms`, the worst
case); the ratios old / new; the growth from the smallest size (linear is 9x from 1k to 9k, quadratic 81x); and how
many edits each start asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from bot.app import build_engines, build_services
from bot.services import Services
from bot.services.progress import queued_line, starting_line
from bot.services.queue_board import MIN_REFRESH_S
from bot.settings import Settings
from bot.voice.connections import Playback, VoiceLimits
from db.engine import open_database

log = logging.getLogger("bench.queue_cost")


def no_discord() -> SimpleNamespace:
    """A client stand-in that knows no guild: renders go on without a voice connection."""
    return SimpleNamespace(get_guild=lambda _id: None, guilds=[])


class Recorder:
    def __init__(self) -> None:
        self.statuses = 0

    async def status(self, text: str) -> None:
        self.statuses += 1

    async def note(self, text: str) -> None:
        pass

    async def done(self, text: str, attachment) -> None:
        pass


# -- the algorithm before (baseline) ------------------------------------------------------------------------------------


def old_service_order(queue) -> list:
    queues = {g: list(q) for g, q in queue._by_guild.items()}
    order: list = []
    rotation = list(queue._rotation)
    while any(queues.values()):
        for guild_id in rotation:
            if queues.get(guild_id):
                order.append(queues[guild_id].pop(0))
    return order


def old_position(queue, job) -> int:
    order = old_service_order(queue)
    return order.index(job) + 1 if job in order else 0


def old_wait_seconds(queue, job, workers: int) -> float | None:
    order = old_service_order(queue)
    if job not in order:
        return 0.0
    now = time.monotonic()
    total = 0.0
    for other in [*queue._running.values(), *order[: order.index(job)]]:
        if other.predicted_s is None:
            return None
        elapsed = now - other.started_at if other.started_at is not None else 0.0
        total += max(0.0, other.predicted_s - elapsed)
    return total / max(1, workers)


def old_started(say, job, reporter) -> None:
    say._waiting.pop(job.id, None)
    say._spawn(reporter.status(starting_line(job.predicted_s)))
    queue = say.queue
    for waiting, their_reporter in list(say._waiting.values()):
        position = old_position(queue, waiting)
        if position:
            wait_s = old_wait_seconds(queue, waiting, sum(w.slots for w in say.workers))
            say._spawn(their_reporter.status(queued_line(position, wait_s, waiting.predicted_s)))


# -- measuring ----------------------------------------------------------------------------------------------------------


async def fill(services: Services, count: int, guilds: int, old: bool) -> list[Recorder]:
    say = services.say
    template = await say.prepare(1, 20, 10**6, set(), "Hello there, a short line to read.", None)
    reporters = []
    for i in range(count):
        request = dataclasses.replace(template, guild_id=1 + i % guilds, user_id=1 + i // 3)
        reporter = Recorder()
        job = say.render_job(request, reporter)
        if old:
            job.on_start = lambda job, reporter=reporter: old_started(say, job, reporter)
        say.wait_in_line(job, request, reporter)
        reporters.append(reporter)
    if not old:
        positions, waits = services.queue.positions(), services.queue.wait_times()
        for job, reporter in say._waiting.values():
            say.queue_board.told(job, reporter, positions[job.id], waits[job.id])
    return reporters


async def start_once(services: Services) -> float:
    """CPU seconds of the loop thread for one start and what it set off at once (old: one edit task per waiting
    job; new: the board's pass over the queue when it is due, and one edit)."""
    started = time.thread_time()
    job = await services.queue.get()
    job.on_start(job)
    for _ in range(3):  # the tasks it spawned run, and their done callbacks
        await asyncio.sleep(0)
    elapsed = time.thread_time() - started
    services.queue.finish(job, "cancelled")
    job.done.cancel()
    await asyncio.sleep(MIN_REFRESH_S)  # the next start is due a fresh pass again (the worst case)
    return elapsed


def _cpu(fn) -> float:
    started = time.thread_time()
    fn()
    return time.thread_time() - started


async def measure(count: int, starts: int, old: bool, guilds: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            device="cpu", data_dir=Path(tmp) / "data", outputs_dir=Path(tmp) / "out",
            database_url=f"sqlite+aiosqlite:///{Path(tmp) / 'n.db'}",
            max_queued_per_guild=100_000, max_queued_total=100_000,
        )  # fmt: skip
        db = await open_database(settings.database_url)
        services = build_services(
            settings, db, build_engines(settings), Playback(no_discord(), VoiceLimits.of(settings))
        )
        try:
            reporters = await fill(services, count, guilds, old)
            times = []
            for _ in range(starts):
                times.append(await start_once(services))
            edits = sum(r.statuses for r in reporters) / starts
            refresh = 0.0
            if not old:  # the board's pass over the queue, which a start sets off at most once a second
                board = services.say.queue_board
                refresh = min(_cpu(board.refresh) for _ in range(3))
            return min(times), refresh, edits
        finally:
            await services.shutdown()
            await db.close()


async def main(args: argparse.Namespace) -> dict:
    result: dict[str, object] = {"guilds": args.guilds}
    for count in args.sizes:
        start_s, refresh_s, new_edits = await measure(count, args.starts, False, args.guilds)
        old_s, _, old_edits = await measure(count, args.old_starts, True, args.guilds)
        new_s = start_s + refresh_s  # the worst case: a start that also pays for a whole pass
        result[str(count)] = {
            "old_ms": round(old_s * 1000, 2),
            "new_start_ms": round(start_s * 1000, 3),
            "new_refresh_ms": round(refresh_s * 1000, 3),
            "new_ms": round(new_s * 1000, 3),
            "old_over_new": round(old_s / new_s, 1),
            "old_edits_per_start": round(old_edits, 1),
            "new_edits_per_start": round(new_edits, 1),
        }
        log.info(
            "%d waiting: old %.1f ms, new %.2f ms (pass %.2f ms)", count, old_s * 1000, new_s * 1000, refresh_s * 1000
        )
    smallest, largest = str(args.sizes[0]), str(args.sizes[-1])
    for key in ("old_ms", "new_ms", "new_refresh_ms"):
        result[f"growth_{key}_{smallest}_to_{largest}"] = round(result[largest][key] / result[smallest][key], 1)
    return result


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 9000])
    p.add_argument("--starts", type=int, default=5, help="job starts measured per size (the minimum is kept)")
    p.add_argument("--old-starts", type=int, default=1, help="the same for the old algorithm (seconds each at 9k)")
    p.add_argument("--guilds", type=int, default=10)
    return p.parse_args()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("bot").setLevel(logging.WARNING)
    print(json.dumps(asyncio.run(main(parse_args()))))

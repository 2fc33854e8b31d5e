"""Smart ETA before queueing: the /say service tells a waiting user when their render starts and how long it takes,
from `Narrator.predict_seconds` of the jobs ahead and of their own (real engine on tiny checkpoints, CPU)."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
import pytest_asyncio

from bot.jobs.queue import Job, JobQueue
from bot.narration import Narrator
from bot.narration.eta import eta_key
from bot.services import Services
from bot.settings import Settings
from db.engine import open_database
from tests.services import services_for

GUILD, CHANNEL, ALICE, BOB, CAROL = 10, 20, 1, 2, 3
STORED_RATE = 2.5  # compute seconds per second of speech, as if measured on earlier renders
QUEUED = re.compile(r"^Queued, position (\d+) — starts in about (\d+) s, takes about (\d+) s\.$")


class Recorder:
    """Stands in for the Discord interaction: keeps what the service tells the user."""

    def __init__(self) -> None:
        self.statuses: list[str] = []
        self.notes: list[str] = []
        self.finals: list[str] = []

    async def status(self, text: str) -> None:
        self.statuses.append(text)

    async def note(self, text: str) -> None:
        self.notes.append(text)

    async def done(self, text: str, attachment) -> None:
        self.finals.append(text)


@pytest_asyncio.fixture
async def services(tiny_bot_settings: Settings):
    db = await open_database(tiny_bot_settings.database_url)
    services = services_for(tiny_bot_settings, db)
    yield services
    await services.shutdown()
    await db.close()


def _store_speed(services: Services, rate: float) -> Narrator:
    """Persist a measured speed for the worker's model + device, as earlier renders would have."""
    narrator = services.workers[0].narrator
    path = services.settings.data_dir / "eta.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({eta_key(narrator.engine.describe()): {"rate": rate, "renders": 3}}))
    return narrator


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
@pytest.mark.slow
async def test_queued_say_is_told_when_it_starts_and_how_long_it_takes(services: Services) -> None:
    narrator = _store_speed(services, STORED_RATE)
    scripts = {
        ALICE: "Hello there, this is the first render of the morning.",
        BOB: "[Calm] A second script, a little longer, to read aloud slowly. [Pause 1s] [Excited] And a last line!",
        CAROL: "Third.",
    }
    requests = [await services.say.prepare(GUILD, CHANNEL, u, set(), text, None) for u, text in scripts.items()]
    predicted = [narrator.predict_seconds(r.plan.script) for r in requests]
    at_default = Narrator(narrator.engine, outputs_dir=None, eta_path=None)  # nothing measured: real time
    for request, seconds in zip(requests, predicted, strict=True):
        assert seconds == pytest.approx(STORED_RATE * at_default.predict_seconds(request.plan.script))
    assert predicted[1] > predicted[0] > predicted[2] > 0 and sum(predicted) < 89  # small enough to read in seconds

    reporters = [Recorder() for _ in requests]
    jobs = [(await services.say.enqueue(r, rep))[0] for r, rep in zip(requests, reporters, strict=True)]
    assert [j.predicted_s for j in jobs] == predicted
    assert reporters[0].statuses == []  # first in line on a free worker: nothing to wait for
    for position, reporter in ((2, reporters[1]), (3, reporters[2])):
        (line,) = reporter.statuses
        match = QUEUED.match(line)
        assert match, line
        assert int(match[1]) == position
        assert int(match[2]) == max(1, round(sum(predicted[: position - 1])))  # the renders ahead of it
        assert int(match[3]) == max(1, round(predicted[position - 1]))  # its own

    await services.start()
    await _until(lambda: reporters[0].statuses and len(reporters[1].statuses) == 2)
    assert reporters[0].statuses[0] == f"Starting… takes about {max(1, round(predicted[0]))} s."
    match = QUEUED.match(reporters[1].statuses[1])  # moved up: now only Alice's (just started) render is ahead
    assert match and int(match[1]) == 1
    assert abs(int(match[2]) - predicted[0]) <= 1  # what is left of it, measured a moment after it started
    services.queue.cancel(jobs[1])
    services.queue.cancel(jobs[2])
    await jobs[0].done
    await services.say.drain(timeout=10)
    assert reporters[0].finals and reporters[0].finals[-1].startswith("Done:")


@pytest.mark.asyncio
async def test_wait_counts_what_is_left_of_running_jobs_and_shares_it_over_workers() -> None:
    async def idle(job, worker):  # pragma: no cover - no worker runs in this test
        raise AssertionError

    queue = JobQueue(max_queued_per_user=3)
    running, ahead, mine = Job(1, 1, idle, predicted_s=30.0), Job(1, 2, idle, predicted_s=12.0), Job(1, 3, idle)
    mine.predicted_s = 5.0
    for job in (running, ahead, mine):
        queue.submit(job)
    assert await queue.get() is running
    now = running.started_at + 10.0  # 10 s into the running job's predicted 30 s
    assert queue.wait_seconds(mine, now=now) == pytest.approx(20.0 + 12.0)
    assert queue.wait_seconds(mine, workers=2, now=now) == pytest.approx((20.0 + 12.0) / 2)
    assert queue.wait_seconds(ahead, now=running.started_at + 45.0) == 0.0  # overran its prediction: not negative
    assert queue.wait_seconds(running) == 0.0  # already running
    ahead.predicted_s = None  # e.g. a voice design job: no prediction, so no promise
    assert queue.wait_seconds(mine, now=now) is None

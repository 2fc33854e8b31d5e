"""The real inference worker driving the real narration engine on tiny checkpoints (CPU)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
import soundfile as sf

from bot.jobs.queue import Job
from bot.narration import planning as narrate
from bot.narration.production import AudioChunk, Finished
from bot.services import Services
from bot.settings import Settings
from db.engine import open_database
from tests.clips import voiced_wav_bytes
from tests.services import services_for

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
GUILD, ALICE, BOB = 10, 1, 2


@pytest_asyncio.fixture
async def services(tiny_bot_settings: Settings):
    db = await open_database(tiny_bot_settings.database_url)
    services = services_for(tiny_bot_settings, db)
    await services.start()
    yield services
    await services.shutdown()
    await db.close()


async def _plan(services: Services, script: str):
    async def resolve(name: str):
        return await services.library.resolve(GUILD, ALICE, name)

    return await narrate.plan(script, 2000, None, resolve)


def _collector(services: Services, plan, events: list, render_id: int):
    async def work(job: Job, worker) -> None:
        async for event in narrate.render(worker.narrator, plan, job.cancel_event, render_id):
            events.append((time.monotonic(), event))

    return work


async def test_render_streams_chunks_before_the_master_and_they_match_it(services: Services) -> None:
    plan = await _plan(services, "[Calm] Hello there. [Pause 0.3s] [Excited] What a day!")
    events: list = []
    job = Job(GUILD, ALICE, _collector(services, plan, events, 7))
    services.queue.submit(job)
    await job.done
    kinds = [type(e).__name__ for _, e in events]
    assert kinds[0] in ("AudioChunk", "Progress") and kinds[-1] == "Finished"
    assert kinds.index("AudioChunk") < kinds.index("Finished")
    assert any(k == "Progress" for k in kinds)
    streamed = np.concatenate([e.audio for _, e in events if isinstance(e, AudioChunk)])
    finished = events[-1][1]
    master, sr = sf.read(str(finished.master_path), dtype="float32")
    assert sr == 24_000 and len(master) == len(streamed)
    assert np.abs(master - streamed).max() < 1e-3  # PCM_16 master vs float stream
    assert finished.audio_seconds == pytest.approx(len(master) / 24_000, abs=0.01)
    assert services.settings.custom_voice_model in services.workers[0].narrator.engine.loaded()  # kept for the next


async def test_cancel_mid_render_stops_within_200ms_and_the_worker_goes_on(services: Services) -> None:
    long = " ".join(["This sentence is here to make the render take a while."] * 6)
    plan = await _plan(services, long)
    events: list = []
    job = Job(GUILD, ALICE, _collector(services, plan, events, 8))
    services.queue.submit(job)
    while not any(isinstance(e, AudioChunk) for _, e in events):
        await asyncio.sleep(0.005)
    t0 = time.monotonic()
    services.queue.cancel(job)
    with pytest.raises(asyncio.CancelledError):
        await job.done
    assert time.monotonic() - t0 < 0.2
    assert all(t <= t0 + 0.01 for t, _ in events), "audio kept coming after the cancel"
    assert not any(isinstance(e, Finished) for _, e in events)

    after: list = []
    nxt = Job(GUILD, BOB, _collector(services, await _plan(services, "Next one."), after, 9))
    services.queue.submit(nxt)
    await nxt.done
    assert isinstance(after[-1][1], Finished)


async def test_two_guilds_share_the_worker_fairly(services: Services) -> None:
    order: list[int] = []

    def tagged(guild: int, plan, events):
        inner = _collector(services, plan, events, guild)

        async def work(job: Job, worker) -> None:
            order.append(guild)
            await inner(job, worker)

        return work

    plan = await _plan(services, "Short line.")
    jobs = [Job(1, 100 + i, tagged(1, plan, []), label="g1") for i in range(3)]
    jobs.append(Job(2, 200, tagged(2, plan, []), label="g2"))
    for job in jobs:
        services.queue.submit(job)
    await asyncio.gather(*(j.done for j in jobs))
    assert order.index(2) <= 1  # guild 2 did not wait behind guild 1's whole backlog


async def test_clone_and_design_store_locked_timbres(services: Services) -> None:
    cloned = await services.creation.clone(GUILD, ALICE, "Reader", voiced_wav_bytes(2.0), "r.wav", "hello there", True)
    assert cloned.kind == "cloned" and cloned.consent and len(cloned.timbre) == 4 * 32  # tiny hidden size 32
    assert Path(cloned.ref_clip_path).is_file()
    designed = await services.creation.design(GUILD, BOB, "mine", "a warm low voice", personal=True)
    assert designed.kind == "designed" and designed.scope == "personal" and designed.timbre
    assert (await services.library.locked(GUILD, BOB)).id == designed.id  # locked at creation
    identity = narrate.identity_of(designed, services.settings.custom_voice_model)
    assert identity.id == f"voice-{designed.id}" and identity.vector is not None

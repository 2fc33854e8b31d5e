"""The job-wide frame budget (issue 12): one /say could reach 13,220 frames plus 3,780 drift-retry frames and was
stopped only by the 600 s timeout. Now every segment and every drift-guard attempt, heard or not, draws on one budget
(NARRATOR_MAX_JOB_AUDIO_S, counted in code frames), and a render that spends it stops with one clear sentence. Real
engine on tiny checkpoints (CPU); the engine is wrapped only to count the frames it generated."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from bot.engine.local import LocalEngine
from bot.engine.options import EngineOptions
from bot.narration import DriftGuard, Identity, Narrator, parse_script
from bot.narration.production import FrameBudgetExceeded
from bot.settings import Settings
from db import repo
from db.engine import open_database
from tests.services import services_for

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(300), pytest.mark.usefixtures("one_torch_thread")]


class Counted:
    """The real engine, counting the frames each stream yields (an instrument, not a stand-in)."""

    def __init__(self, engine: LocalEngine) -> None:
        self.engine = engine
        self.frames = 0
        self.streams = 0

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def stream(self, request, stop):
        self.streams += 1
        for chunk in self.engine.stream(request, stop):
            self.frames += len(chunk) // self.engine.audio.samples_per_frame
            yield chunk


@pytest.fixture(scope="module")
def engine(tiny_custom_voice, tiny_base):
    return LocalEngine(EngineOptions(str(tiny_custom_voice), base_model=str(tiny_base), device="cpu",
                                     dtype="float32", first_chunk_frames=1, chunk_frames=2))  # fmt: skip


async def test_segments_and_drift_retries_share_one_budget(engine, tmp_path) -> None:
    counted = Counted(engine)
    # Every attempt is re-sampled (threshold above any cosine): 3 attempts per segment, each probing ~7 frames.
    guard = DriftGuard(threshold=1.01, max_retries=2, probe_seconds=0.5)
    narrator = Narrator(counted, outputs_dir=tmp_path / "out", eta_path=None, guard=guard)
    try:
        noise = np.random.default_rng(0).uniform(-0.3, 0.3, 24000).astype(np.float32)
        reference = tuple(float(x) for x in await narrator.xvector(noise, 24000))
        voice = Identity("vivian", "preset", engine.custom_voice_model, speaker="vivian", reference_vector=reference)
        script = parse_script("Hi. [Pause 0.2s] Ho. [Pause 0.2s] Hey.")
        budget = 20  # frames: 1.6 s
        chunks = []
        with pytest.raises(FrameBudgetExceeded) as info:
            async for event in narrator.render(script, {None: voice}, max_job_seconds=budget / 12.5):
                chunks.append(event)
        assert info.value.frames == budget
        assert counted.frames <= budget  # discarded probes counted: without the shared budget, 3 x 7 + the rest
        assert counted.streams >= 3  # it did re-sample, drawing on the same budget
        assert not list((tmp_path / "out").rglob("*.wav"))  # no partial master kept
    finally:
        narrator.close()


async def test_without_a_budget_the_same_render_goes_on(engine, tmp_path) -> None:
    counted = Counted(engine)
    narrator = Narrator(counted, outputs_dir=None, eta_path=None, guard=DriftGuard(enabled=False))
    try:
        voice = Identity("vivian", "preset", engine.custom_voice_model, speaker="vivian")
        script = parse_script("Hi. [Pause 0.1s] Ho. [Pause 0.1s] Hey.")
        events = [e async for e in narrator.render(script, {None: voice}, max_frames=8)]
        assert type(events[-1]).__name__ == "Finished" and counted.frames > 13  # 3 segments, no job budget
    finally:
        narrator.close()


class Recorder:
    def __init__(self) -> None:
        self.finals: list[str] = []

    async def status(self, text: str) -> None:
        pass

    async def note(self, text: str) -> None:
        pass

    async def done(self, text: str, attachment) -> None:
        self.finals.append(text)


@pytest.mark.slow
async def test_a_say_that_spends_its_budget_is_stopped_with_a_sentence(tiny_bot_settings: Settings) -> None:
    settings = Settings(**{**vars(tiny_bot_settings), "max_job_audio_s": 1.0, "drift_retries": 0})
    db = await open_database(settings.database_url)
    services = services_for(settings, db)  # no voice connection: the render goes on
    try:
        # "Hi." is estimated at 0.2 s of speech, well inside 1 s (12 frames), so /say takes it; the tiny random model
        # then runs on toward its per-segment cap (2 x estimate + 4 s = 55 frames), as an untamed generation does.
        request = await services.say.prepare(10, 20, 1, set(), "Hi.", None)
        reporter = Recorder()
        job, _ = await services.say.enqueue(request, reporter)
        await services.start()
        with pytest.raises(Exception):  # noqa: B017 - the job's own error; what the user is told is checked below
            await asyncio.wait_for(job.done, 120)
        await services.say.drain(timeout=10)
        (final,) = reporter.finals
        assert final.startswith("This render reached the limit of 1 s of generated audio for one /say")
        assert "NARRATOR_MAX_JOB_AUDIO_S" in final
        async with db.sessions() as s:
            row = await repo.get_render(s, request.render_id)
        assert row.status == "failed"
    finally:
        await services.shutdown()
        await db.close()

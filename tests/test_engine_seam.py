"""The engine seam: the services run on any `Engine`. A scripted engine (a second implementation) drives /say, the
voice library, cloning and design; the local engine over tiny checkpoints is warmed at start and takes the speed-path
switch from the settings."""

from __future__ import annotations

import asyncio

import discord
import numpy as np
import pytest
import pytest_asyncio
import soundfile as sf

from bot.app import build_engines
from bot.engine.local import LocalEngine
from bot.engine.protocol import Engine
from bot.narration.identity import vector_from_bytes
from bot.settings import Settings
from db.engine import open_database
from tests.clips import voiced_wav_bytes
from tests.scripted_engine import ScriptedEngine
from tests.services import services_for

pytestmark = pytest.mark.asyncio
GUILD, CHANNEL, ALICE, BOB = 10, 20, 1, 2


class Recorder:
    def __init__(self) -> None:
        self.statuses: list[str] = []
        self.finals: list[tuple[str, object]] = []

    async def status(self, text: str) -> None:
        self.statuses.append(text)

    async def note(self, text: str) -> None:
        self.statuses.append(text)

    async def done(self, text: str, attachment) -> None:
        self.finals.append((text, attachment))


@pytest_asyncio.fixture
async def scripted(tmp_path):
    settings = Settings(
        custom_voice_model="scripted/custom-voice", device="cpu", data_dir=tmp_path / "data",
        outputs_dir=tmp_path / "out", database_url=f"sqlite+aiosqlite:///{tmp_path / 'n.db'}",
    )  # fmt: skip
    engine = ScriptedEngine()
    db = await open_database(settings.database_url)
    services = services_for(settings, db, [engine])
    await services.start()
    yield services, engine
    await services.shutdown()
    await db.close()


async def _say(services, user: int, script: str, voice: str | None = None) -> Recorder:
    request = await services.say.prepare(GUILD, CHANNEL, user, set(), script, voice)
    reporter = Recorder()
    job, _ = await services.say.enqueue(request, reporter)
    await asyncio.wait_for(job.done, 180)
    await services.say.drain(timeout=10)
    return reporter


def _master_of(reporter: Recorder, outputs) -> np.ndarray:
    (text, attachment), *_ = reporter.finals
    assert text.startswith("Done:"), text
    (wav,) = sorted(outputs.rglob("*.wav"))
    audio, sr = sf.read(str(wav), dtype="float32")
    assert sr == 24_000
    return audio


async def test_both_engines_satisfy_the_protocol(tmp_path, tiny_custom_voice) -> None:
    assert isinstance(ScriptedEngine(), Engine)
    (local,) = build_engines(Settings(custom_voice_model=str(tiny_custom_voice), device="cpu", data_dir=tmp_path))
    assert isinstance(local, LocalEngine) and isinstance(local, Engine)


async def test_services_start_the_engine_and_render_a_say_through_it(scripted) -> None:
    services, engine = scripted
    assert engine.calls[0] == "start"  # warmed before any job
    assert await services.library.preset_speakers() == ["aiden", "serena"]  # read through the seam
    reporter = await _say(services, ALICE, "[Excited] Hello there, friend. [Pause 0.5s] [@serena] And hi.")
    audio = _master_of(reporter, services.settings.outputs_dir)
    first, second = engine.requests
    assert first.speaker == "aiden" and first.instruct and "excit" in first.instruct.lower()
    assert second.speaker == "serena" and second.model == engine.model
    assert len(audio) / 24_000 == pytest.approx(len(first.text) / 15 + 0.5 + max(0.2, len(second.text) / 15), abs=0.05)


async def test_clone_and_design_go_through_the_seam_and_lock_the_timbre(scripted) -> None:
    services, engine = scripted
    cloned = await services.creation.clone(GUILD, ALICE, "Reader", voiced_wav_bytes(2.0), "r.wav", "hello", True)
    designed = await services.creation.design(GUILD, BOB, "Mine", "a warm low voice", personal=True)
    assert engine.calls.count("xvector") >= 2 and "design_clip" in engine.calls
    assert cloned.timbre and designed.timbre and cloned.timbre != designed.timbre
    await _say(services, BOB, "Spoken in my designed voice.")
    (request,) = engine.requests
    assert request.vector == pytest.approx(tuple(vector_from_bytes(designed.timbre)))  # the lock travels


async def test_a_model_error_is_reported_and_the_next_say_renders(scripted) -> None:
    services, engine = scripted
    engine.fail_with = RuntimeError("device lost")
    failed = await _say_failing(services)
    assert failed and "Done:" not in failed[0][0]
    reporter = await _say(services, ALICE, "After the failure.")
    assert reporter.finals[0][0].startswith("Done:")


async def _say_failing(services):
    request = await services.say.prepare(GUILD, CHANNEL, ALICE, set(), "This one fails.", None)
    reporter = Recorder()
    job, _ = await services.say.enqueue(request, reporter)
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(job.done, 180)
    await services.say.drain(timeout=10)
    return reporter.finals


@pytest.mark.parametrize("compile_", [True, False])
async def test_narrator_compile_reaches_the_model_from_say(tmp_path, tiny_custom_voice, compile_: bool) -> None:
    settings = Settings(
        custom_voice_model=str(tiny_custom_voice), base_model=None, voice_design_model=None, device="cpu",
        dtype="float32", compile=compile_, data_dir=tmp_path / "data", outputs_dir=tmp_path / "out",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'n.db'}",
    )  # fmt: skip
    db = await open_database(settings.database_url)
    services = services_for(settings, db)
    await services.start()
    try:
        reporter = await _say(services, ALICE, "Hello.")
        assert reporter.finals[0][0].startswith("Done:")
        engine = services.workers[0].narrator.engine
        assert engine.speed_path_requested() is compile_
    finally:
        await services.shutdown()
        await db.close()


async def test_batched_local_engine_gives_each_render_its_own_audio(tiny_custom_voice) -> None:
    """Two renders as rows of one batch: each equals the same request rendered alone (its own seed and row)."""
    from bot.engine.options import EngineOptions
    from bot.engine.protocol import SpeechRequest

    engine = LocalEngine(EngineOptions(str(tiny_custom_voice), device="cpu", dtype="float32", max_streams=2,
                                       speed_path=False, first_chunk_frames=1, chunk_frames=2))  # fmt: skip
    engine.start()
    assert engine.batching and engine.capabilities.max_streams == 2
    a = SpeechRequest("Hello there.", str(tiny_custom_voice), speaker="vivian", seed=3, max_frames=10)
    b = SpeechRequest("Another voice speaks.", str(tiny_custom_voice), speaker="ryan", seed=9, max_frames=14)

    def render(request):
        return np.concatenate(list(engine.stream(request, lambda: False)))

    alone_a, alone_b = render(a), render(b)
    together_a, together_b = await asyncio.gather(asyncio.to_thread(render, a), asyncio.to_thread(render, b))
    engine.close()
    np.testing.assert_allclose(together_a, alone_a, atol=1e-5)
    np.testing.assert_allclose(together_b, alone_b, atol=1e-5)


class _VoiceClientStandIn(discord.VoiceClient):
    """Discord's voice connection, outside our control: connected, 'playing' whatever source it was handed."""

    def __init__(self, guild) -> None:  # no gateway, no UDP
        self._guild, self.played = guild, None

    @property
    def guild(self):
        return self._guild

    @property
    def source(self):
        return self.played

    def is_connected(self) -> bool:
        return True

    def is_playing(self) -> bool:
        return self.played is not None

    def is_paused(self) -> bool:  # idle voice pauses the player; this stand-in's player never pauses
        return False

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def play(self, source, *, after=None, **options) -> None:
        self.played, self.after = source, after

    async def disconnect(self, *, force: bool = False) -> None:
        self.played = None


async def test_a_render_that_fails_mid_stream_releases_the_guild_and_the_next_is_heard(scripted) -> None:
    from types import SimpleNamespace

    from bot.voice.source import SILENCE

    services, engine = scripted
    guild = SimpleNamespace(id=GUILD)
    guild.voice_client = _VoiceClientStandIn(guild)
    services.playback.client = SimpleNamespace(get_guild=lambda _id: guild, guilds=[guild])
    engine.fail_with, engine.fail_after_chunks = RuntimeError("device lost"), 2  # two chunks reach voice, then fails
    assert await _say_failing(services)
    await _say(services, ALICE, "Heard after the failure.")
    source = guild.voice_client.played
    source._pace_reads = False  # read as fast as the test likes (the player's 20 ms pacing is not under test)
    frames = [source.read() for _ in range(200)]
    audible = [f for f in frames if f != SILENCE]
    # The failed render's 2 chunks (0.16 s = 8 frames) play out, then the next render's 1.6 s follow: nothing is stuck
    # behind the failed render's partial frame.
    assert len(audible) >= 8 + 70, len(audible)


async def test_voice_lost_for_good_with_audio_queued_tells_the_owner(scripted) -> None:
    """A render that fed all its audio, then the bot is kicked before it was played: the owner is told why."""
    from types import SimpleNamespace

    services, _engine = scripted
    guild = SimpleNamespace(id=GUILD)
    guild.voice_client = _VoiceClientStandIn(guild)
    services.playback.client = SimpleNamespace(get_guild=lambda _id: guild, guilds=[guild])
    reporter = await _say(services, ALICE, "Every word of this was queued before the kick.")
    assert reporter.finals[0][0].startswith("Done:")
    assert not any("lost the voice connection" in text for text in reporter.statuses)
    guild.voice_client.after(None)  # discord.py's player ends (kicked): nothing of the render was played
    for _ in range(50):
        await asyncio.sleep(0.02)
        if any("lost the voice connection" in text for text in reporter.statuses):
            break
    assert sum("lost the voice connection" in text for text in reporter.statuses) == 1, reporter.statuses

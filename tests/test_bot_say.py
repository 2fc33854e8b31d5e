from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio

from bot.errors import NotAllowed, NotYourVoice, QueueFull, UnknownVoice, UserError
from bot.jobs.queue import Job
from bot.services import Services
from bot.settings import Settings
from db import repo
from db.engine import open_database
from tests.services import services_for

GUILD, CHANNEL, ALICE, BOB = 10, 20, 1, 2


@pytest_asyncio.fixture
async def services(tmp_path: Path):
    settings = Settings(
        device="cpu",
        data_dir=tmp_path / "data",
        outputs_dir=tmp_path / "out",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'n.db'}",
        max_queued_per_user=2,
    )
    db = await open_database(settings.database_url)
    yield services_for(settings, db)
    await db.close()


async def prepare(services: Services, script: str, voice: str | None = None, user: int = ALICE, roles=()):
    return await services.say.prepare(GUILD, CHANNEL, user, set(roles), script, voice)


@pytest.mark.asyncio
async def test_good_script_is_planned_with_its_voices(services: Services) -> None:
    bob = await services.library.add(repo.NewVoice(GUILD, BOB, "guild", "preset", "Bob", speaker="ryan"))
    request = await prepare(services, "[Calm] Hello. [Pause 0.5s] [@bob] [Excited] Hi!")
    assert request.voice is None and request.plan.voices[None] is None
    assert request.plan.voices["bob"].id == bob.id
    assert len(services.queue) == 0  # preparing queues nothing


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("script", "needle"),
    [
        ("[Whispering hello", "character 1"),
        ("Hello [] there", "empty tag"),
        ("[Pause 30s] hi", "too long"),
        ("[Calm]", "nothing to say"),
    ],
)
async def test_malformed_scripts_say_where_and_how(services: Services, script: str, needle: str) -> None:
    with pytest.raises(UserError, match=needle) as info:
        await prepare(services, script)
    assert "Example:" in str(info.value)


@pytest.mark.asyncio
async def test_unknown_and_foreign_voices(services: Services) -> None:
    await services.library.add(repo.NewVoice(GUILD, BOB, "personal", "designed", "secret", timbre=b"\0" * 128))
    with pytest.raises(UnknownVoice):
        await prepare(services, "[@ghost] boo")
    with pytest.raises(UnknownVoice):
        await prepare(services, "hello", voice="ghost")
    with pytest.raises(NotYourVoice):
        await prepare(services, "hello", voice="secret")
    assert (await prepare(services, "hello", voice="secret", user=BOB)).voice.name == "secret"


@pytest.mark.asyncio
async def test_guild_limits_role_and_length(services: Services) -> None:
    await services.guild_config.update(GUILD, max_script_chars=20, required_role_id=99)
    with pytest.raises(NotAllowed, match="role"):
        await prepare(services, "hello")
    with pytest.raises(UserError, match="limit is 20"):
        await prepare(services, "x" * 21, roles=[99])
    assert await prepare(services, "hello", roles=[99])


@pytest.mark.asyncio
async def test_full_queue_is_refused_before_deferring(services: Services) -> None:
    async def never(job, worker):  # pragma: no cover - no worker runs in this test
        raise AssertionError

    for _ in range(2):
        services.queue.submit(Job(GUILD, ALICE, never))
    with pytest.raises(QueueFull, match="limit is 2"):
        await prepare(services, "hello")
    assert await prepare(services, "hello", user=BOB)


@pytest.mark.asyncio
async def test_skip_drops_the_playing_render_and_stop_clears_the_guild(services: Services) -> None:

    from bot.voice.source import FRAME_BYTES, SILENCE, PCMStreamSource

    source = PCMStreamSource(prebuffer_s=0, pace=False)
    services.playback._sources[GUILD] = source

    async def idle(job, worker):  # pragma: no cover - no worker runs in this test
        raise AssertionError

    playing, waiting, elsewhere = Job(GUILD, ALICE, idle), Job(GUILD, BOB, idle), Job(99, ALICE, idle)
    for job in (playing, waiting, elsewhere):
        services.queue.submit(job)
    source.feed(playing.id, b"\x01" * FRAME_BYTES * 5)
    source.feed(waiting.id, b"\x02" * FRAME_BYTES * 5)
    assert source.read() == b"\x01" * FRAME_BYTES
    assert services.say.skip(GUILD)
    assert source.read() == b"\x02" * FRAME_BYTES  # the next render's audio follows at once
    assert playing.cancelled and not waiting.cancelled
    assert services.say.stop(GUILD) == 1  # `waiting`; the other guild's job is untouched
    assert source.read() == SILENCE and waiting.cancelled and not elsewhere.cancelled
    assert not services.say.skip(GUILD)

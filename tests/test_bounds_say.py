"""Work per /say as an attack (issue 12), scripted against the real /say service: pause floods, units in odd case,
invisible characters, fine-tuned checkpoint ping-pong, scripts predicted to outlast the job timeout, and renders
that would run on past the frame budget. Each is refused (or stopped) with one clear sentence, nothing queued."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytest_asyncio

from bot.errors import UserError
from bot.narration import Pause
from bot.narration.eta import eta_key
from bot.services import Services
from bot.settings import Settings
from db import repo
from db.engine import open_database
from tests.services import services_for

GUILD, CHANNEL, ALICE = 10, 20, 1


@pytest_asyncio.fixture
async def open_services(tmp_path: Path):
    opened = []

    async def make(settings: Settings | None = None, **values) -> Services:
        if settings is None:
            settings = Settings(
                device="cpu", data_dir=tmp_path / "data", outputs_dir=tmp_path / "out",
                database_url=f"sqlite+aiosqlite:///{tmp_path / 'n.db'}", **values,
            )  # fmt: skip
        db = await open_database(settings.database_url)
        services = services_for(settings, db)  # no voice connection
        opened.append((services, db))
        return services

    yield make
    for services, db in opened:
        await services.shutdown()
        await db.close()


async def refused(services: Services, script: str) -> str:
    """The one sentence /say answers with; asserts nothing was queued or recorded."""
    with pytest.raises(UserError) as info:
        await services.say.prepare(GUILD, CHANNEL, ALICE, set(), script, None)
    assert len(services.queue) == 0
    async with services.db.sessions() as s:
        assert await repo.recent_renders(s, GUILD) == []  # no render recorded
    text = str(info.value)
    assert "Traceback" not in text and text.encode("utf-8")  # sendable as is (no lone surrogate quoted back)
    return text


# -- the parser's bounds, through /say ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_pause_flood_is_refused_with_the_limit(open_services) -> None:
    services = await open_services()
    text = await refused(services, "[Pause 10s]" * 63 + "a")  # 630 s of silence that renders instantly
    assert "add up to more than 30 s" in text and "NARRATOR_MAX_PAUSE_TOTAL_S" in text and "Example:" in text
    lower = await open_services(Settings(**{**vars(services.settings), "max_pause_total_s": 2.0}))
    assert "more than 2 s" in await refused(lower, "a [Pause 1.5s] b [Pause 1s] c")


@pytest.mark.asyncio
async def test_a_pause_in_milliseconds_written_in_capitals_is_milliseconds(open_services) -> None:
    services = await open_services()
    request = await services.say.prepare(GUILD, CHANNEL, ALICE, set(), "Wait [Pause 5MS] go.", None)
    (pause,) = [i for i in request.plan.script.items if isinstance(i, Pause)]
    assert pause.seconds == pytest.approx(0.005)


@pytest.mark.asyncio
@pytest.mark.parametrize(("script", "where", "what"), [
    ("Hello \ud83d there", 7, "lone surrogate (U+D83D)"),  # half an emoji: used to fail at the database insert
    ("Bell\x07 ring", 5, "control character (U+0007)"),
    ("\x1b[2J clear", 1, "control character (U+001B)"),
])  # fmt: skip
async def test_invisible_characters_are_refused_with_their_position(open_services, script, where, what) -> None:
    text = await refused(await open_services(), script)
    assert f"at character {where}" in text and what in text


@pytest.mark.asyncio
async def test_a_long_script_names_the_setting(open_services) -> None:
    services = await open_services(max_script_chars=100)
    assert "NARRATOR_MAX_SCRIPT_CHARS" in await refused(services, "word " * 30)


# -- checkpoints per script --------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_fine_tuned_checkpoints_per_script_are_bounded(open_services) -> None:
    services = await open_services()
    for name, model in (("anna", "ft/a"), ("bert", "ft/b"), ("cara", "ft/c"), ("anne", "ft/a")):
        await services.library.add(repo.NewVoice(GUILD, ALICE, "guild", "finetuned", name, model=model, speaker="spk"))
    # Five voices over three checkpoints, alternating: every segment would reload a model.
    text = await refused(services, "[@anna] one [@bert] two [@cara] three [@anna] four [@bert] five")
    assert "3 fine-tuned voices" in text and "at most 2" in text and "NARRATOR_MAX_CHECKPOINTS_PER_SCRIPT" in text
    assert "`anna`" in text and "`cara`" in text
    # Two checkpoints are fine, however many voices share them, and however often they alternate.
    request = await services.say.prepare(
        GUILD, CHANNEL, ALICE, set(), "[@anna] one [@bert] two [@anne] three [@anna] four [@bert] five", None
    )
    assert set(request.plan.voices) == {None, "anna", "bert", "anne"}
    one = await open_services(Settings(**{**vars(services.settings), "max_checkpoints_per_script": 1}))
    assert "at most 1" in await refused(one, "[@anna] one [@bert] two")


# -- predicted work --------------------------------------------------------------------------------------------------


def store_speed(services: Services, rate: float) -> None:
    """Persist a measured speed (compute seconds per second of speech) for the worker's model and device."""
    narrator = services.workers[0].narrator
    path = services.settings.data_dir / "eta.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({eta_key(narrator.engine.describe()): {"rate": rate, "renders": 3}}))


@pytest.mark.asyncio
async def test_a_script_predicted_to_outlast_the_timeout_is_refused_with_its_length(open_services) -> None:
    services = await open_services(job_timeout_s=60)
    store_speed(services, 40.0)  # a slow device: 40 s of compute per second of speech
    script = "This sentence takes a few seconds to say out loud, maybe four."  # ~4.2 s of speech -> ~170 s
    text = await refused(services, script)
    assert "about 4 s of speech" in text and "about 3 min to render" in text
    assert "more than the 48 s one /say may use" in text and "NARRATOR_JOB_TIMEOUT_S is 60 s" in text
    # The same script fits a timeout it can finish in; what the user is told then is the same prediction.
    roomy = await open_services(Settings(**{**vars(services.settings), "job_timeout_s": 600}))
    request = await roomy.say.prepare(GUILD, CHANNEL, ALICE, set(), script, None)
    assert 150 < request.predicted_s < 480


@pytest.mark.asyncio
async def test_more_speech_than_the_frame_budget_is_refused_before_queueing(open_services) -> None:
    services = await open_services(max_job_audio_s=10)
    text = await refused(services, "A sentence of some length that keeps going. " * 6)
    assert "of speech; one /say can make at most 10 s (NARRATOR_MAX_JOB_AUDIO_S)" in text

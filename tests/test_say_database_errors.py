"""A database that fails before a render is accepted (issue 13): the real services over a real SQLite file that
another connection has locked, or that lost a table. The user gets one clear sentence, the failure is logged with its
exception, and nothing is left half-done: no row, no job, no voice join. The start-up report of interrupted renders
survives the same failures."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytest_asyncio

from bot.errors import DatabaseBusy
from bot.services.render_rows import mark_interrupted
from bot.settings import Settings
from db import repo
from db.engine import open_database
from tests.scripted_engine import ScriptedEngine
from tests.services import services_for

pytestmark = pytest.mark.asyncio
GUILD, CHANNEL, ALICE = 10, 20, 1
BUSY = "the database is busy or unavailable; try again in a moment."


class Recorder:
    """What the user is told of a render (a stand-in for the Discord interaction)."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def status(self, text: str) -> None:
        self.texts.append(text)

    async def note(self, text: str) -> None:
        self.texts.append(text)

    async def done(self, text: str, attachment) -> None:
        self.texts.append(text)


class VoiceChannel:
    """A Discord voice channel stand-in that records whether the bot tried to join it."""

    def __init__(self) -> None:
        self.id = 30
        self.guild = SimpleNamespace(id=GUILD, voice_client=None, me=None)
        self.joined = False

    async def connect(self, **_options):
        self.joined = True
        raise AssertionError("the bot must not join voice when the render could not be recorded")


@pytest.fixture
def path(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setattr("db.engine.BUSY_TIMEOUT_MS", 200)  # the bot gives up on a lock after 0.2 s, not 5 s
    return tmp_path / "n.db"


@pytest_asyncio.fixture
async def services(tmp_path: Path, path: Path):
    settings = Settings(custom_voice_model="scripted/custom-voice", device="cpu", data_dir=tmp_path / "data",
                        outputs_dir=tmp_path / "out", database_url=f"sqlite+aiosqlite:///{path}")  # fmt: skip
    db = await open_database(settings.database_url)
    services = services_for(settings, db, [ScriptedEngine()])
    await services.start()
    yield services
    await services.shutdown()
    await db.close()


@contextlib.contextmanager
def write_locked(path: Path) -> Iterator[None]:
    """Another process's transaction holds the database's write lock (as a backup or a second bot might)."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
    finally:
        other.rollback()
        other.close()


def statuses(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [status for (status,) in db.execute("SELECT status FROM renders ORDER BY id")]


def execute(path: Path, statement: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(statement)
        db.commit()


def logged_database_error(caplog, words: str) -> bool:
    return any(r.levelno == logging.ERROR and words in r.getMessage() and r.exc_info for r in caplog.records)


async def test_a_locked_database_at_submit_is_one_sentence_and_leaves_nothing_behind(services, path, caplog) -> None:
    say = services.say
    request = await say.prepare(GUILD, CHANNEL, ALICE, set(), "Hello there.", None)  # reads go on under the lock
    channel = VoiceChannel()
    with write_locked(path), pytest.raises(DatabaseBusy) as refused:
        await say.submit(request, channel, Recorder())

    assert str(refused.value) == f"I could not record this render: {BUSY}"
    assert logged_database_error(caplog, "could not record a /say render")
    assert statuses(path) == [] and request.render_id is None
    assert len(services.queue) == 0 and not services.queue.running(GUILD) and not say._tasks
    assert not channel.joined  # the row is written before the bot moves, so a failure moves nothing

    reporter = Recorder()  # the database is free again: the same request goes through
    job, _ = await say.enqueue(request, reporter)
    await job.done
    await say.drain(timeout=10)
    assert statuses(path) == ["done"] and reporter.texts[-1].startswith("Done:")


async def test_a_failing_voice_lookup_at_prepare_is_one_sentence(services, path, caplog) -> None:
    execute(path, "DROP TABLE locks")  # the lookup of the member's locked voice fails
    with pytest.raises(DatabaseBusy) as refused:
        await services.say.prepare(GUILD, CHANNEL, ALICE, set(), "Hello there.", None)
    assert str(refused.value) == f"I could not prepare this render: {BUSY}"
    assert logged_database_error(caplog, "could not prepare a /say render")
    assert statuses(path) == [] and len(services.queue) == 0


async def test_marking_interrupted_renders_at_start_survives_a_locked_database(path, caplog) -> None:
    db = await open_database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.sessions.begin() as s:
            await repo.add_render(s, GUILD, CHANNEL, ALICE, "left running by a crash", None)
        with write_locked(path):
            await mark_interrupted(db)  # logged, not raised: start-up goes on
        assert logged_database_error(caplog, "could not mark the renders left unfinished")
        assert statuses(path) == ["queued"]  # marked at the next start instead
        await mark_interrupted(db)
        assert statuses(path) == ["interrupted"]
    finally:
        await db.close()


class TextChannel:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, text: str, **_options) -> None:
        self.sent.append(text)


async def test_the_interrupted_report_survives_database_errors(services, path, caplog) -> None:
    channel = TextChannel()
    client = SimpleNamespace(get_channel=lambda _id: channel)
    async with services.db.sessions.begin() as s:
        await repo.add_render(s, GUILD, CHANNEL, ALICE, "interrupted", None)
        await repo.mark_unfinished_interrupted(s)

    with write_locked(path):  # told, but "notified" cannot be recorded: logged, and told again next start
        await services.say.report_interrupted(client)
    assert len(channel.sent) == 1 and "interrupted because I restarted" in channel.sent[0]
    assert logged_database_error(caplog, "was told")
    async with services.db.sessions() as s:
        assert [r.id for r in await repo.unnotified_interrupted(s)] == [1]

    execute(path, "DROP TABLE renders")  # cannot even be read: logged, nothing raised
    await services.say.report_interrupted(client)
    assert logged_database_error(caplog, "could not read the renders interrupted")
    assert len(channel.sent) == 1

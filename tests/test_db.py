from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from db import repo
from db.engine import Database, current, open_database, upgrade
from db.errors import VoiceNameTaken
from db.migrate import head_revision
from db.models import Base
from tests import db_backends

GUILD, OTHER_GUILD, ALICE, BOB = 111, 222, 1, 2


@pytest.fixture(params=db_backends.BACKENDS)
def db_url(request, tmp_path: Path):
    yield from db_backends.fresh_url(request.param, tmp_path)


@pytest_asyncio.fixture
async def database(db_url: str):
    db = await open_database(db_url)
    yield db
    await db.close()


def test_cli_upgrade_then_current(db_url: str) -> None:
    url = db_url
    assert current(url) is None
    upgrade(url)
    assert current(url) == head_revision()
    upgrade(url)  # idempotent
    assert current(url) == head_revision()


@pytest.mark.asyncio
async def test_migrations_match_models_and_sqlite_uses_wal(database: Database) -> None:
    async with database.engine.connect() as conn:
        diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
        if database.engine.dialect.name == "sqlite":
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
    assert diff == [], f"models and migrations differ: {diff}"


async def _voice(db: Database, **kw) -> repo.Voice:
    values = {"guild_id": GUILD, "owner_id": ALICE, "scope": "guild", "kind": "preset", "name": "narrator"} | kw
    async with db.sessions.begin() as s:
        return await repo.add_voice(s, repo.NewVoice(**values))


@pytest.mark.asyncio
async def test_voice_visibility_personal_and_library(database: Database) -> None:
    lib = await _voice(database, name="Narrator", speaker="vivian", model="m")
    mine = await _voice(database, name="narrator", scope="personal", kind="designed", timbre=b"\0" * 8)
    other_guild = await _voice(database, guild_id=OTHER_GUILD, name="elsewhere")
    imported = await _voice(database, guild_id=repo.GLOBAL_GUILD, owner_id=0, name="tuned", kind="finetuned")
    async with database.sessions() as s:
        alice_sees = {v.id for v in await repo.list_voices(s, GUILD, ALICE)}
        bob_sees = {v.id for v in await repo.list_voices(s, GUILD, BOB)}
        assert alice_sees == {lib.id, mine.id, imported.id}
        assert bob_sees == {lib.id, imported.id}
        assert other_guild.id not in alice_sees
        assert (await repo.find_voice(s, GUILD, ALICE, "NARRATOR")).id == mine.id  # personal wins
        assert (await repo.find_voice(s, GUILD, BOB, "narrator")).id == lib.id
        assert await repo.find_voice(s, GUILD, BOB, "nobody") is None
        assert {v.id for v in await repo.find_voice_anywhere(s, GUILD, "narrator")} == {lib.id, mine.id}
        assert (await repo.get_voice(s, mine.id)).timbre == b"\0" * 8


@pytest.mark.asyncio
async def test_duplicate_library_name_is_refused(database: Database) -> None:
    await _voice(database, name="dup")
    with pytest.raises(VoiceNameTaken, match="dup"):
        await _voice(database, name="dup")
    with pytest.raises(VoiceNameTaken):
        await _voice(database, name="DUP", owner_id=BOB)  # a library name is the guild's, whoever registers it


def test_bad_kind_names_the_allowed_set() -> None:
    with pytest.raises(ValueError, match="cloned"):
        repo.NewVoice(guild_id=1, owner_id=1, scope="guild", kind="robot", name="x")


@pytest.mark.asyncio
async def test_lock_unlock_and_remove_cascades(database: Database) -> None:
    a = await _voice(database, name="a")
    b = await _voice(database, name="b")
    async with database.sessions.begin() as s:
        await repo.lock_voice(s, ALICE, GUILD, a.id)
        await repo.lock_voice(s, ALICE, GUILD, b.id)  # re-lock replaces
    async with database.sessions() as s:
        assert (await repo.locked_voice(s, ALICE, GUILD)).id == b.id
        assert await repo.locked_voice(s, ALICE, OTHER_GUILD) is None
    async with database.sessions.begin() as s:
        assert await repo.remove_voice(s, b.id)
    async with database.sessions() as s:
        assert await repo.locked_voice(s, ALICE, GUILD) is None
    async with database.sessions.begin() as s:
        await repo.lock_voice(s, ALICE, GUILD, a.id)
        assert await repo.unlock_voice(s, ALICE, GUILD)
        assert not await repo.unlock_voice(s, ALICE, GUILD)


@pytest.mark.asyncio
async def test_render_lifecycle_and_interrupted_on_restart(db_url: str) -> None:
    url = db_url
    db = await open_database(url)
    async with db.sessions.begin() as s:
        done = await repo.add_render(s, GUILD, 5, ALICE, "[Calm] hi", None)
        running = await repo.add_render(s, GUILD, 5, BOB, "[Sad] bye", None)
        await repo.mark_render(s, done.id, "running")
        await repo.mark_render(s, done.id, "done", output_path="outputs/x.wav", audio_seconds=1.5)
        await repo.mark_render(s, running.id, "running")
        with pytest.raises(ValueError, match="status"):
            await repo.mark_render(s, done.id, "exploded")
    await db.close()  # the process "dies" with one render running

    db = await open_database(url)
    async with db.sessions.begin() as s:
        assert await repo.mark_unfinished_interrupted(s) == 1
    async with db.sessions() as s:
        pending = await repo.unnotified_interrupted(s)
        finished = await repo.get_render(s, done.id)
    assert [r.id for r in pending] == [running.id] and pending[0].user_id == BOB
    assert finished.status == "done" and finished.output_path == "outputs/x.wav" and finished.finished_at is not None
    async with db.sessions.begin() as s:
        await repo.mark_notified(s, running.id)
    async with db.sessions() as s:
        assert await repo.unnotified_interrupted(s) == []
        assert [r.id for r in await repo.recent_renders(s, GUILD)] == [running.id, done.id]
    await db.close()


@pytest.mark.asyncio
async def test_guild_settings_defaults_and_updates(database: Database) -> None:
    async with database.sessions.begin() as s:
        assert await repo.get_guild_settings(s, GUILD) == repo.GuildSettings(GUILD)
        updated = await repo.update_guild_settings(s, GUILD, max_script_chars=500, auto_leave=False)
        assert updated.max_script_chars == 500 and updated.auto_leave is False
        assert updated.manage_role_id is None
        assert (await repo.update_guild_settings(s, GUILD, manage_role_id=77)).manage_role_id == 77
        with pytest.raises(ValueError, match="volume"):
            await repo.update_guild_settings(s, GUILD, volume=3)
    async with database.sessions() as s:
        assert (await repo.get_guild_settings(s, GUILD)).max_script_chars == 500


@pytest.mark.asyncio
async def test_downgrade_to_the_first_schema_and_back_keeps_voices_and_locks(database: Database) -> None:
    from alembic import command

    from db.migrate import alembic_config

    voice = await _voice(database, name="Émile")
    async with database.sessions.begin() as s:
        await repo.lock_voice(s, BOB, GUILD, voice.id)

    def migrate(sync_connection, revision: str, step) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_connection
        step(cfg, revision)

    async with database.engine.begin() as conn:
        await conn.run_sync(migrate, "0001", command.downgrade)
    async with database.engine.begin() as conn:
        await conn.run_sync(migrate, "head", command.upgrade)
        diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
    assert diff == []
    async with database.sessions() as s:
        assert (await repo.locked_voice(s, BOB, GUILD)).id == voice.id
        assert (await repo.find_voice(s, GUILD, BOB, "ÉMILE")).id == voice.id  # key recomputed on the way up

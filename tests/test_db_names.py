"""Voice names compared by `voice_name_key` (NFKC + casefold): lookups, conflicts, and the migration of old rows."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import pytest
import pytest_asyncio
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from db import repo
from db.engine import Database, create_engine, open_database
from db.errors import VoiceNameTaken
from db.migrate import upgrade_async
from db.names import voice_name_key
from tests import db_backends

GUILD, OTHER_GUILD, ALICE, BOB = 111, 222, 1, 2
UNICODE_NAMES = ["Émile", "Ωmega", "Дмитрий"]


@pytest.fixture(params=db_backends.BACKENDS)
def db_url(request, tmp_path: Path):
    yield from db_backends.fresh_url(request.param, tmp_path)


@pytest_asyncio.fixture
async def database(db_url: str):
    db = await open_database(db_url)
    yield db
    await db.close()


async def _add(db: Database, name: str, **kw) -> repo.Voice:
    values = {"guild_id": GUILD, "owner_id": ALICE, "scope": "guild", "kind": "preset", "name": name} | kw
    async with db.sessions.begin() as s:
        return await repo.add_voice(s, repo.NewVoice(**values))


# ---- the key itself -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Émile", "ÉMILE"),
        ("Émile", "E\u0301mile"),  # precomposed vs combining accent
        ("Ωmega", "ΩMEGA"),
        ("Дмитрий", "ДМИТРИЙ"),
        ("Straße", "STRASSE"),
        ("Ｍｅｇａ", "mega"),  # full-width
        ("  two   words ", "Two Words"),
    ],
)
def test_names_that_mean_the_same_share_a_key(a: str, b: str) -> None:
    assert voice_name_key(a) == voice_name_key(b)


def test_different_names_keep_different_keys() -> None:
    keys = {voice_name_key(n) for n in ["Émile", "Emile", "Ωmega", "omega", "Дмитрий", "Dmitry"]}
    assert len(keys) == 6


@given(st.text(max_size=40))
def test_key_is_idempotent(name: str) -> None:
    key = voice_name_key(name)
    assert voice_name_key(key) == key


# ---- lookups by key -------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("name", UNICODE_NAMES)
async def test_unicode_names_can_be_found_locked_and_removed(database: Database, name: str) -> None:
    voice = await _add(database, name)
    shouted = name.upper()
    async with database.sessions.begin() as s:
        assert (await repo.find_voice(s, GUILD, BOB, shouted)).id == voice.id
        assert (await repo.library_voice(s, GUILD, name.lower())).id == voice.id
        assert [v.id for v in await repo.find_voice_anywhere(s, GUILD, shouted)] == [voice.id]
        await repo.lock_voice(s, BOB, GUILD, (await repo.find_voice(s, GUILD, BOB, name.lower())).id)
    async with database.sessions.begin() as s:
        assert (await repo.locked_voice(s, BOB, GUILD)).name == name
        assert await repo.remove_voice(s, (await repo.library_voice(s, GUILD, shouted)).id)
    async with database.sessions() as s:
        assert await repo.find_voice(s, GUILD, BOB, name) is None
        assert await repo.locked_voice(s, BOB, GUILD) is None


@pytest.mark.asyncio
async def test_names_differing_only_in_case_or_form_conflict(database: Database) -> None:
    await _add(database, "Émile")
    for other in ("ÉMILE", "E\u0301mile", " émile "):
        with pytest.raises(VoiceNameTaken, match="Émile"):
            await _add(database, other)
    await _add(database, "ÉMILE", guild_id=OTHER_GUILD)  # another guild's library is another namespace
    await _add(database, "émile", scope="personal")  # a personal voice may share a library name


@pytest.mark.asyncio
async def test_personal_names_are_unique_per_owner_across_guilds(database: Database) -> None:
    await _add(database, "Ωmega", scope="personal")
    with pytest.raises(VoiceNameTaken):
        await _add(database, "ΩMEGA", scope="personal", guild_id=OTHER_GUILD)
    await _add(database, "ΩMEGA", scope="personal", owner_id=BOB)
    async with database.sessions() as s:
        assert await repo.name_taken(s, OTHER_GUILD, ALICE, "personal", "ωmega") is not None
        assert await repo.name_taken(s, OTHER_GUILD, ALICE, "guild", "ωmega") is None


@pytest.mark.asyncio
async def test_the_unique_index_holds_without_the_repo_check(database: Database) -> None:
    """Two writers that both passed the name check: the database itself refuses the second."""
    await _add(database, "Дмитрий")
    from db.models import VoiceRow

    with pytest.raises(sa.exc.IntegrityError):
        async with database.sessions.begin() as s:
            s.add(VoiceRow(guild_id=GUILD, owner_id=BOB, scope="guild", kind="preset", name="ДМИТРИЙ",
                           name_key=voice_name_key("ДМИТРИЙ"), model="", consent=False, language="auto", seed=0,
                           created_at=datetime.now(timezone.utc)))  # fmt: skip


# ---- migrating old rows ---------------------------------------------------------------------------------------------

OLD_VOICES = sa.table(
    "voices",
    *(sa.column(c) for c in ("id", "guild_id", "owner_id", "scope", "kind", "name", "model", "consent")),
    *(sa.column(c) for c in ("language", "seed", "created_at", "ref_clip_path")),
)


def _old_row(voice_id: int, name: str, *, guild_id: int = GUILD, owner_id: int = ALICE, scope: str = "guild",
             kind: str = "preset") -> dict:  # fmt: skip
    return {"id": voice_id, "guild_id": guild_id, "owner_id": owner_id, "scope": scope, "kind": kind, "name": name,
            "model": "m", "consent": True, "language": "auto", "seed": 0, "ref_clip_path": None,
            "created_at": datetime(2026, 11, 1, tzinfo=timezone.utc)}  # fmt: skip


@pytest.mark.asyncio
async def test_migration_keys_old_rows_and_keeps_both_of_a_colliding_pair(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(db_url)
    await upgrade_async(engine, "0001")
    rows = [
        _old_row(1, "Émile"),
        _old_row(2, "Narrator"),
        _old_row(3, "ÉMILE"),  # same library, same key as voice 1: kept, keyed "émile#3"
        _old_row(4, "ÉMILE", guild_id=OTHER_GUILD),  # other library: no collision
        _old_row(5, "Ωmega", scope="personal", kind="designed"),
        _old_row(6, "ωMEGA", scope="personal", kind="designed", guild_id=OTHER_GUILD),  # same owner's personal
        _old_row(7, "Émile#3", owner_id=BOB),  # takes the key the collision would have used
    ]
    async with engine.begin() as conn:
        await conn.execute(OLD_VOICES.insert(), rows)
    with caplog.at_level(logging.WARNING, logger="db.migrations"):
        await upgrade_async(engine)
    await engine.dispose()

    db = await open_database(db_url)
    async with db.sessions() as s:
        keys = {v.id: v.name_key for v in await repo.all_voices(s)}
        assert keys[1] == "émile" and keys[2] == "narrator" and keys[4] == "émile" and keys[5] == "ωmega"
        assert keys[3] == "émile#3" and keys[6] == "ωmega#6"
        assert keys[7] == "émile#3#7"
        assert (await repo.find_voice(s, GUILD, BOB, "émile")).id == 1
        assert (await repo.find_voice(s, GUILD, BOB, "ÉMILE#3")).id == 3  # the kept twin can still be named
        assert {v.consent_state for v in await repo.all_voices(s)} == {"confirmed"}
    await db.close()
    warned = [r.getMessage() for r in caplog.records if r.name == "db.migrations"]
    assert len(warned) == 3 and any("voice 3 'ÉMILE'" in w and "voice 1 'Émile'" in w for w in warned), warned

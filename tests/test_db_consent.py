"""Consent records on cloned voices, the speaker's view and revocation, personal voices, leaving a guild."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
import pytest_asyncio
import sqlalchemy as sa

from db import consent, repo
from db.engine import Database, create_engine, open_database
from db.errors import NotTheSpeaker, VoiceNameTaken
from db.migrate import upgrade_async
from tests import db_backends

GUILD, OTHER_GUILD, ADMIN, SPEAKER, MEMBER, ROLE = 111, 222, 1, 2, 3, 900


@pytest.fixture(params=db_backends.BACKENDS)
def db_url(request, tmp_path: Path):
    yield from db_backends.fresh_url(request.param, tmp_path)


@pytest_asyncio.fixture
async def database(db_url: str):
    db = await open_database(db_url)
    yield db
    await db.close()


def _clone(name: str, guild_id: int = GUILD, clip: str | None = None) -> repo.NewVoice:
    return repo.NewVoice(guild_id=guild_id, owner_id=ADMIN, scope="guild", kind="cloned", name=name, model="m",
                         ref_clip_path=clip or f"data/voices/{guild_id}/{name}.wav", transcript="hello",
                         consent=False, timbre=b"\1" * 16)  # fmt: skip


async def _pending(db: Database, name: str = "Zoë", **kw) -> repo.Voice:
    async with db.sessions.begin() as s:
        return await consent.create_pending_clone(s, _clone(name, **kw), SPEAKER)


@pytest.mark.asyncio
async def test_a_pending_clone_is_unusable_until_its_speaker_confirms(database: Database) -> None:
    voice = await _pending(database)
    assert voice.consent_state == "pending" and voice.speaker_user_id == SPEAKER and voice.consented_at is None
    assert not repo.may_use(voice, SPEAKER)
    async with database.sessions() as s:
        assert await repo.find_voice(s, GUILD, MEMBER, "zoë") is None
        assert voice.id not in {v.id for v in await repo.list_voices(s, GUILD, MEMBER)}
        assert (await repo.find_voice(s, GUILD, MEMBER, "zoë", include_pending=True)).id == voice.id
        assert (await repo.library_voice(s, GUILD, "ZOË")).id == voice.id  # its name is taken meanwhile
        assert [v.id for v in await consent.pending_for_speaker(s, SPEAKER)] == [voice.id]
    with pytest.raises(VoiceNameTaken):
        await _pending(database, "ZOË")

    async with database.sessions.begin() as s:
        with pytest.raises(NotTheSpeaker):
            await consent.confirm_consent(s, voice.id, ADMIN)  # the admin who registered it cannot
        assert await consent.confirm_consent(s, 10_000, SPEAKER) is None
    async with database.sessions() as s:
        assert (await repo.get_voice(s, voice.id)).consent_state == "pending"

    before = datetime.now(timezone.utc)
    async with database.sessions.begin() as s:
        confirmed = await consent.confirm_consent(s, voice.id, SPEAKER)
    assert confirmed.consent_state == "confirmed" and confirmed.consent is True
    assert before <= confirmed.consented_at <= datetime.now(timezone.utc)
    async with database.sessions.begin() as s:
        assert (await repo.find_voice(s, GUILD, MEMBER, "Zoë")).id == voice.id
        again = await consent.confirm_consent(s, voice.id, SPEAKER)
        assert again.consented_at == confirmed.consented_at
        assert await consent.pending_for_speaker(s, SPEAKER) == []


@pytest.mark.asyncio
async def test_only_cloned_voices_wait_for_consent(database: Database) -> None:
    new = repo.NewVoice(guild_id=GUILD, owner_id=ADMIN, scope="guild", kind="designed", name="d")
    async with database.sessions.begin() as s:
        with pytest.raises(ValueError, match="cloned"):
            await consent.create_pending_clone(s, new, SPEAKER)


@pytest.mark.asyncio
async def test_restriction_to_a_role_or_to_the_speaker(database: Database) -> None:
    voice = await _pending(database)
    async with database.sessions.begin() as s:
        await consent.confirm_consent(s, voice.id, SPEAKER)
        by_role = await consent.set_restriction(s, voice.id, allowed_role_id=ROLE, speaker_only=False)
    assert repo.may_use(by_role, MEMBER, [ROLE]) and not repo.may_use(by_role, MEMBER, [ROLE + 1])
    assert repo.may_use(by_role, SPEAKER)  # the speaker may always use their own voice
    async with database.sessions.begin() as s:
        only_speaker = await consent.set_restriction(s, voice.id, allowed_role_id=None, speaker_only=True)
        assert await consent.set_restriction(s, 10_000, allowed_role_id=None, speaker_only=True) is None
    assert repo.may_use(only_speaker, SPEAKER) and not repo.may_use(only_speaker, MEMBER, [ROLE])
    async with database.sessions() as s:
        stored = await repo.get_voice(s, voice.id)
    assert stored.speaker_only and stored.allowed_role_id is None


@pytest.mark.asyncio
async def test_the_speaker_lists_and_revokes_voices_made_from_them(database: Database) -> None:
    here = await _pending(database, "Zoë")
    there = await _pending(database, "Zoë", guild_id=OTHER_GUILD)
    async with database.sessions.begin() as s:
        await consent.confirm_consent(s, here.id, SPEAKER)
        await repo.lock_voice(s, MEMBER, GUILD, here.id)
    async with database.sessions() as s:
        mine = await consent.voices_of_speaker(s, SPEAKER)
        assert [(v.id, v.consent_state) for v in mine] == [(here.id, "confirmed"), (there.id, "pending")]
        assert await consent.voices_of_speaker(s, MEMBER) == []
    async with database.sessions.begin() as s:
        with pytest.raises(NotTheSpeaker):
            await consent.revoke_voice(s, here.id, ADMIN)
        removed = await consent.revoke_voice(s, here.id, SPEAKER)
        assert await consent.revoke_voice(s, here.id, SPEAKER) is None
    assert removed == consent.RemovedVoice(here.id, GUILD, "Zoë", f"data/voices/{GUILD}/Zoë.wav")
    async with database.sessions() as s:
        assert await repo.get_voice(s, here.id) is None  # the row and its timbre vector are gone
        assert await repo.locked_voice(s, MEMBER, GUILD) is None
        assert [v.id for v in await consent.voices_of_speaker(s, SPEAKER)] == [there.id]


@pytest.mark.asyncio
async def test_personal_voices_counted_listed_and_deleted_by_their_owner(database: Database) -> None:
    async with database.sessions.begin() as s:
        for guild_id, name in ((GUILD, "Émile"), (OTHER_GUILD, "Ωmega")):
            await repo.add_voice(s, repo.NewVoice(guild_id=guild_id, owner_id=MEMBER, scope="personal",
                                                  kind="designed", name=name, ref_clip_path=f"{name}.wav"))  # fmt: skip
        await repo.add_voice(s, repo.NewVoice(guild_id=GUILD, owner_id=MEMBER, scope="guild", kind="preset", name="x"))
    async with database.sessions.begin() as s:
        assert await consent.count_personal_voices(s, MEMBER) == 2
        assert await consent.count_personal_voices(s, ADMIN) == 0
        assert [v.name for v in await consent.list_personal_voices(s, MEMBER)] == ["Émile", "Ωmega"]
        assert await consent.delete_personal_voice(s, ADMIN, "émile") is None  # not theirs
        removed = await consent.delete_personal_voice(s, MEMBER, "ΩMEGA")
    assert removed.name == "Ωmega" and removed.ref_clip_path == "Ωmega.wav"
    async with database.sessions() as s:
        assert [v.name for v in await consent.list_personal_voices(s, MEMBER)] == ["Émile"]


@pytest.mark.asyncio
async def test_leaving_a_guild_deletes_its_voices_and_returns_their_clips(database: Database) -> None:
    gone = await _pending(database, "a", clip="a.wav")
    async with database.sessions.begin() as s:
        personal = await repo.add_voice(s, repo.NewVoice(guild_id=GUILD, owner_id=MEMBER, scope="personal",
                                                         kind="designed", name="p", ref_clip_path="p.wav"))  # fmt: skip
        preset = await repo.add_voice(s, repo.NewVoice(guild_id=GUILD, owner_id=0, scope="guild", kind="preset",
                                                       name="vivian"))  # fmt: skip
        imported = await repo.add_voice(s, repo.NewVoice(guild_id=repo.GLOBAL_GUILD, owner_id=0, scope="guild",
                                                         kind="finetuned", name="tuned"))  # fmt: skip
        kept = await repo.add_voice(s, repo.NewVoice(guild_id=OTHER_GUILD, owner_id=0, scope="guild", kind="preset",
                                                     name="kept"))  # fmt: skip
        await repo.lock_voice(s, MEMBER, GUILD, imported.id)
        await repo.lock_voice(s, MEMBER, OTHER_GUILD, imported.id)
    async with database.sessions.begin() as s:
        clips = await consent.delete_guild_voices(s, GUILD)
        with pytest.raises(ValueError, match="guild 0"):
            await consent.delete_guild_voices(s, repo.GLOBAL_GUILD)
    assert sorted(clips) == ["a.wav", "p.wav"]
    async with database.sessions() as s:
        for voice in (gone, personal, preset):
            assert await repo.get_voice(s, voice.id) is None
        assert await repo.get_voice(s, imported.id) is not None and await repo.get_voice(s, kept.id) is not None
        assert await repo.locked_voice(s, MEMBER, GUILD) is None
        assert (await repo.locked_voice(s, MEMBER, OTHER_GUILD)).id == imported.id


@pytest.mark.asyncio
async def test_existing_voices_migrate_as_confirmed(db_url: str) -> None:
    engine = create_engine(db_url)
    await upgrade_async(engine, "0002")
    registered = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)
    columns = ("id", "guild_id", "owner_id", "scope", "kind", "name", "name_key", "model", "consent", "language",
               "seed", "created_at")  # fmt: skip
    old = sa.table("voices", *(sa.column(c) for c in columns))
    values = [
        (1, GUILD, ADMIN, "guild", "cloned", "c", "c", "m", True, "auto", 0, registered),
        (2, GUILD, ADMIN, "guild", "preset", "p", "p", "m", False, "auto", 0, registered),
    ]
    async with engine.begin() as conn:
        await conn.execute(old.insert(), [dict(zip(columns, row, strict=True)) for row in values])
    await upgrade_async(engine)
    await engine.dispose()
    db = await open_database(db_url)
    async with db.sessions() as s:
        cloned, preset = await repo.get_voice(s, 1), await repo.get_voice(s, 2)
        assert (await repo.find_voice(s, GUILD, MEMBER, "c")).id == 1  # usable as before
    await db.close()
    assert cloned.consent_state == preset.consent_state == "confirmed"
    assert cloned.consented_at == registered and preset.consented_at is None
    assert cloned.speaker_user_id is None and not cloned.speaker_only and cloned.allowed_role_id is None

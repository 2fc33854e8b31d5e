"""Consent, voice names and personal voices, through the real services over a scripted engine (the model is the only
thing not run): a clone for someone else waits for them, only they can confirm or revoke it, a server can restrict
it, the posted master says it is synthetic, and a server's voices go when the bot is removed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_asyncio

from bot.errors import NotAllowed, UnknownVoice, UserError
from bot.services.acting import acting_roles
from bot.settings import Settings
from db import repo
from db.engine import open_database
from tests.clips import voiced_wav_bytes
from tests.scripted_engine import ScriptedEngine
from tests.services import services_for

pytestmark = pytest.mark.asyncio
GUILD, GUILD2, CHANNEL = 10, 11, 20
ADMIN, SPEAKER, MEMBER = 1, 2, 3
ROLE = 77


class Recorder:
    def __init__(self) -> None:
        self.finals: list[tuple[str, object]] = []

    async def status(self, text: str) -> None:
        pass

    async def note(self, text: str) -> None:
        pass

    async def done(self, text: str, attachment) -> None:
        self.finals.append((text, attachment))


def _settings(tmp_path: Path, **extra) -> Settings:
    return Settings(
        custom_voice_model="scripted/custom-voice", device="cpu", data_dir=tmp_path / "data",
        outputs_dir=tmp_path / "out", database_url=f"sqlite+aiosqlite:///{tmp_path / 'n.db'}", **extra,
    )  # fmt: skip


@pytest_asyncio.fixture
async def services(tmp_path):
    db = await open_database(_settings(tmp_path).database_url)
    services = services_for(_settings(tmp_path, max_personal_voices=2), db, [ScriptedEngine()])
    await services.start()
    yield services
    await services.shutdown()
    await db.close()


async def _clone(services, name: str, speaker: int | None = SPEAKER, guild: int = GUILD) -> repo.Voice:
    return await services.creation.clone(
        guild, ADMIN, name, voiced_wav_bytes(2.0), "r.wav", "hello there", True, speaker_id=speaker
    )


async def _say(services, user: int, script: str, voice: str | None = None, roles=()) -> Recorder:
    with acting_roles(roles):
        request = await services.say.prepare(GUILD, CHANNEL, user, set(roles), script, voice)
    reporter = Recorder()
    job, _ = await services.say.enqueue(request, reporter)
    await asyncio.wait_for(job.done, 120)
    await services.say.drain(timeout=10)
    return reporter


async def test_a_clone_for_someone_else_waits_for_them_and_only_they_can_confirm(services) -> None:
    voice = await _clone(services, "Reader")
    assert voice.consent_state == "pending" and voice.speaker_user_id == SPEAKER and not voice.usable
    assert Path(voice.ref_clip_path).is_file()
    with pytest.raises(NotAllowed, match="consent"):
        await services.say.prepare(GUILD, CHANNEL, MEMBER, set(), "Hello.", "reader")
    with pytest.raises(NotAllowed, match="consent"):
        await services.library.lock(GUILD, MEMBER, "Reader")
    with pytest.raises(UnknownVoice):  # the admin is not the speaker: nothing waits for *their* consent
        await services.consent.confirm(GUILD, ADMIN, "Reader")
    with pytest.raises(NotAllowed, match="Only the person"):
        await services.consent.confirm_id(voice.id, MEMBER)
    assert len(services.queue) == 0

    confirmed = await services.consent.confirm(GUILD, SPEAKER, "READER")
    assert confirmed.usable and confirmed.consented_at is not None and confirmed.speaker_user_id == SPEAKER
    reporter = await _say(services, MEMBER, "Now it speaks.", "reader")
    (text, attachment), *_ = reporter.finals
    assert text.startswith("Done:") and attachment is not None
    assert "Synthetic speech" in text and "Reader" in text


async def test_the_registrants_own_voice_is_confirmed_at_once(services) -> None:
    own = await _clone(services, "Mine", speaker=None)
    assert own.usable and own.speaker_user_id == ADMIN and own.consented_at is not None


async def test_the_speaker_lists_and_revokes_voices_made_from_them_in_every_guild(services) -> None:
    here = await _clone(services, "Reader")
    there = await _clone(services, "Reader", guild=GUILD2)
    other = await _clone(services, "Someone", speaker=MEMBER)
    await services.consent.confirm_id(here.id, SPEAKER)
    await services.library.lock(GUILD, MEMBER, "Reader")
    mine = await services.consent.mine(SPEAKER)
    assert sorted((v.guild_id, v.name) for v in mine) == [(GUILD, "Reader"), (GUILD2, "Reader")]
    with pytest.raises(NotAllowed):
        await services.consent.revoke_id(other.id, SPEAKER)

    removed = await services.consent.revoke(GUILD, SPEAKER, "reader")
    assert {r.id for r in removed} == {here.id, there.id}
    assert not Path(here.ref_clip_path).exists() and not Path(there.ref_clip_path).exists()
    assert Path(other.ref_clip_path).exists()
    assert await services.consent.mine(SPEAKER) == []
    assert await services.library.locked(GUILD, MEMBER) is None  # the lock went with the voice
    with pytest.raises(UnknownVoice):
        await services.say.prepare(GUILD, CHANNEL, MEMBER, set(), "Hello.", "reader")


async def test_a_guild_restricts_a_clone_to_a_role_or_its_speaker(services) -> None:
    voice = await _clone(services, "Reader")
    await services.consent.confirm_id(voice.id, SPEAKER)
    await services.consent.restrict(GUILD, "reader", role_id=ROLE, speaker_only=False)
    with pytest.raises(NotAllowed, match=f"<@&{ROLE}>"):
        await services.say.prepare(GUILD, CHANNEL, MEMBER, set(), "Hi.", "reader")
    with acting_roles([ROLE]):
        assert (await services.say.prepare(GUILD, CHANNEL, MEMBER, {ROLE}, "Hi.", "reader")).voice.id == voice.id
    with acting_roles([ROLE]):  # `[@name]` voices in the script are checked too
        await services.say.prepare(GUILD, CHANNEL, MEMBER, {ROLE}, "Hi. [@reader] Me too.", None)
    with pytest.raises(NotAllowed):
        await services.say.prepare(GUILD, CHANNEL, MEMBER, set(), "Hi. [@reader] Me too.", None)

    await services.library.lock(GUILD, MEMBER, "reader", [ROLE])
    await services.consent.restrict(GUILD, "reader", role_id=None, speaker_only=True)
    with pytest.raises(NotAllowed, match="Only the person"):  # a lock made earlier does not get around it
        await services.say.prepare(GUILD, CHANNEL, MEMBER, {ROLE}, "Hi.", None)
    assert (await services.say.prepare(GUILD, CHANNEL, SPEAKER, set(), "Hi.", "reader")).voice.id == voice.id
    designed = await services.creation.design(GUILD, ADMIN, "Calm", "a calm low voice", personal=False)
    with pytest.raises(UserError, match="not cloned"):
        await services.consent.restrict(GUILD, designed.name, role_id=ROLE, speaker_only=False)


async def test_leaving_a_guild_deletes_its_voices_and_clips(services) -> None:
    gone = await _clone(services, "Reader")
    kept = await _clone(services, "Reader", guild=GUILD2)
    assert await services.consent.forget_guild(GUILD) == 1
    assert not Path(gone.ref_clip_path).exists() and Path(kept.ref_clip_path).exists()
    assert [v.guild_id for v in await services.consent.mine(SPEAKER)] == [GUILD2]


async def test_an_operator_may_keep_a_guilds_voices(tmp_path) -> None:
    settings = _settings(tmp_path, keep_guild_data=True)
    db = await open_database(settings.database_url)
    services = services_for(settings, db, [ScriptedEngine()])
    await services.start()
    try:
        voice = await _clone(services, "Reader")
        assert await services.consent.forget_guild(GUILD) == 0
        assert Path(voice.ref_clip_path).exists() and len(await services.consent.mine(SPEAKER)) == 1
    finally:
        await services.shutdown()
        await db.close()


async def test_unicode_names_are_one_name_whatever_their_case(services) -> None:
    library = services.library
    await library.add(repo.NewVoice(GUILD, ADMIN, "guild", "preset", "Émile", speaker="aiden"))
    with pytest.raises(UserError, match="already exists"):
        await library.ensure_free(GUILD, MEMBER, "guild", "ÉMILE")
    assert (await library.resolve(GUILD, MEMBER, "émile")).name == "Émile"
    assert await library.names_starting(GUILD, MEMBER, "ÉM") == ["Émile"]
    await library.add(repo.NewVoice(GUILD, ADMIN, "guild", "preset", "Дмитрий", speaker="aiden"))
    await library.lock(GUILD, MEMBER, "дмитрий")
    assert (await library.locked(GUILD, MEMBER)).name == "Дмитрий"
    assert (await library.remove_library_voice(GUILD, "ДМИТРИЙ")).name == "Дмитрий"


async def test_personal_voices_are_capped_and_removable_by_their_owner(services) -> None:
    await services.creation.design(GUILD, MEMBER, "One", "a warm low voice", personal=True)
    second = await services.creation.design(GUILD2, MEMBER, "Two", "a bright high voice", personal=True)
    with pytest.raises(UserError, match="limit is 2"):
        await services.creation.design(GUILD, MEMBER, "Three", "a raspy voice", personal=True)
    with pytest.raises(UnknownVoice):  # someone else cannot delete it
        await services.library.remove_personal_voice(ADMIN, "two")
    removed = await services.library.remove_personal_voice(MEMBER, "TWO")
    assert removed.id == second.id and not Path(second.ref_clip_path).exists()
    third = await services.creation.design(GUILD, MEMBER, "Three", "a raspy voice", personal=True)
    assert [v.name for v in await services.library.personal_voices(MEMBER)] == ["One", "Three"]
    assert third.scope == "personal"


async def test_clips_outside_the_bots_voice_folder_are_never_deleted(services, tmp_path) -> None:
    outside = tmp_path / "operator-clip.wav"
    outside.write_bytes(b"RIFF")
    voice = await services.library.add(
        repo.NewVoice(GUILD, ADMIN, "guild", "cloned", "Imported", ref_clip_path=str(outside))
    )
    await services.library.remove_library_voice(GUILD, voice.name)
    assert outside.exists()

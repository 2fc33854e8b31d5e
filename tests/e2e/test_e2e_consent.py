"""Consent end to end, against the real bot and the fake Discord: an admin registers a clone naming its speaker, the
voice cannot be used until that speaker confirms with /voice consent, then it speaks, and the posted master says it
is synthetic speech and which voice spoke."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import ADMIN, GUILD, MEMBER, Narrator, wait_for_master
from tests.e2e.test_e2e_scenarios import final_text, reference_clip
from tests.fakediscord import payloads
from tests.fakediscord.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio, pytest.mark.timeout(240)]


async def register_for(narrator: Narrator, name: str, speaker: int):
    file = narrator.fake.offer_file("reader.wav", reference_clip())
    options = [{"name": "register", "type": 1, "options": [
        {"name": "name", "type": 3, "value": name},
        {"name": "sample", "type": 11, "value": file["id"]},
        {"name": "transcript", "type": 3, "value": "hello there"},
        {"name": "consent", "type": 5, "value": True},
        {"name": "speaker", "type": 6, "value": str(speaker)},
    ]}]  # fmt: skip
    member = {k: v for k, v in payloads.member(speaker).items() if k != "user"}
    resolved = {"attachments": {file["id"]: file}, "users": {str(speaker): payloads.user(speaker)},
                "members": {str(speaker): member}}  # fmt: skip
    return await narrator.fake.command(GUILD, ADMIN, "voices", options, resolved=resolved)


async def test_a_clone_speaks_only_after_its_speaker_confirms(narrator: Narrator) -> None:
    fake = narrator.fake
    registered = await register_for(narrator, "Reader", MEMBER)
    await wait_until(registered.answered, 120, "the registration")
    text, ephemeral = final_text(registered)
    assert "Registered **Reader**" in text and f"<@{MEMBER}> agrees" in text and ephemeral
    requests = [c for c in fake.channel_messages(fake.guilds[GUILD].text_channel) if f"<@{MEMBER}>" in c.content]
    assert requests and "/voice consent name:Reader" in requests[-1].content

    early = await narrator.say("Not yet.", user=ADMIN, voice="Reader")
    await wait_until(early.answered, 30, "the refusal")
    text, ephemeral = final_text(early)
    assert "consent" in text and ephemeral and not early.deferred

    wrong = await fake.command(GUILD, ADMIN, "voice", [{"name": "consent", "type": 1, "options": [
        {"name": "name", "type": 3, "value": "Reader"}]}])  # fmt: skip
    await wait_until(wrong.answered, 30, "the admin's consent attempt")
    assert "No voice called `Reader` is waiting for your consent" in final_text(wrong)[0]

    agreed = await fake.command(GUILD, MEMBER, "voice", [{"name": "consent", "type": 1, "options": [
        {"name": "name", "type": 3, "value": "reader"}]}])  # fmt: skip
    await wait_until(agreed.answered, 30, "the speaker's consent")
    assert "Thank you: **Reader** can now be used" in final_text(agreed)[0]

    spoken = await narrator.say("[Calm] Now I may speak.", user=ADMIN, voice="Reader")
    audio, rate, _ = await wait_for_master(spoken, timeout=120)
    assert len(audio) > rate // 4
    posted = [c.content for c in spoken.replies if c.files][-1] or final_text(spoken)[0]
    texts = " ".join(spoken.texts)
    assert "Synthetic speech" in texts and "voice: Reader" in texts, (posted, texts)
    statuses = narrator.render_statuses()
    assert statuses[-1] == (ADMIN, "done")

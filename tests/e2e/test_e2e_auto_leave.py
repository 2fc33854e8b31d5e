"""Auto-leave: once the last listener leaves the bot's voice channel, the bot leaves too (the guild setting's default)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import ADMIN, GUILD, MEMBER, Narrator, wait_for_master
from tests.fakediscord.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio, pytest.mark.timeout(120)]


async def test_bot_leaves_when_the_last_listener_does(narrator: Narrator) -> None:
    fake = narrator.fake
    await wait_for_master(await narrator.say("[Calm] Hello there."))
    assert fake.bot_voice_channel(GUILD) is not None

    await fake.member_moves(GUILD, MEMBER, None)
    await wait_until(lambda: fake.guilds[GUILD].voice.get(MEMBER) is None, 5, "the member to leave")
    assert fake.bot_voice_channel(GUILD) is not None, "left while a listener (ADMIN) was still there"

    await fake.member_moves(GUILD, ADMIN, None)
    await wait_until(lambda: fake.bot_voice_channel(GUILD) is None, 15, "the bot to leave the empty channel")

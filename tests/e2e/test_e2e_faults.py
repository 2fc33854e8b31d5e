"""Faults against the real bot: voice dropped mid-stream (scenario 7), a restart with a render in progress
(scenario 8), HTTP 429 and gateway RECONNECT. Scenarios 1-6 are in test_e2e_scenarios.py; fixtures in conftest.py."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time

import pytest

from tests.e2e.conftest import ADMIN, GUILD, Narrator, wait_for_master
from tests.fakediscord.harness import wait_until
from tests.fakediscord.server import FakeDiscord

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio, pytest.mark.timeout(180)]
log = logging.getLogger(__name__)

LONG_LINE = "This is a long line that keeps the narrator talking for quite a while. " * 4


def audible_after(fake: FakeDiscord, since: float, guild: int = GUILD) -> int:
    return sum(p.audible for p in fake.udp.guild_packets(guild, since))


async def hearing(fake: FakeDiscord, since: float, packets: int = 10, guild: int = GUILD) -> None:
    """Wait until `packets` audible packets arrived in `guild` after `since` (the stream is live)."""
    await wait_until(lambda: audible_after(fake, since, guild) >= packets, 90, f"{packets} audible packets")


def database_check(narrator: Narrator) -> tuple[str, list[tuple[int, str]]]:
    """(PRAGMA integrity_check, [(user, status) of every render]) read with plain sqlite3, not the bot's engine."""
    path = narrator.settings.database_url.split("///", 1)[1]
    with contextlib.closing(sqlite3.connect(path)) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        rows = [(int(u), s) for u, s in db.execute("SELECT user_id, status FROM renders ORDER BY id")]
    return integrity, rows


async def say_works(narrator: Narrator, script: str = "[Calm] Back again, all is well.") -> None:
    """A fresh /say is heard in the voice channel and its master is posted."""
    since = time.monotonic()
    sent = await narrator.say(script)
    await wait_for_master(sent)
    await hearing(narrator.fake, since, packets=5)


# 7 ---------------------------------------------------------------------------------------------------------------------
async def test_kicked_from_voice_mid_stream_tells_the_user_and_keeps_serving(narrator: Narrator) -> None:
    fake = narrator.fake
    sent = await narrator.say(LONG_LINE)
    await hearing(fake, sent.sent_at, packets=15)
    await fake.fault_disconnect_bot(GUILD)  # VOICE_STATE_UPDATE(channel null) + close 4014, as when kicked
    kicked_at = time.monotonic()

    await wait_for_master(sent)
    await wait_until(lambda: any("lost the voice connection" in t for t in sent.texts), 30, "the user to be told")
    late = [p.at - kicked_at for p in fake.udp.guild_packets(GUILD, kicked_at + 0.2) if p.audible]
    assert not late, f"audio kept arriving after the kick: {late[:5]}"
    await say_works(narrator)


async def test_voice_server_crash_4015_is_resumed_and_the_stream_goes_on(narrator: Narrator) -> None:
    fake = narrator.fake
    sent = await narrator.say(LONG_LINE)
    await hearing(fake, sent.sent_at, packets=10)
    await fake.fault_close_voice(GUILD, 4015)
    crashed_at = time.monotonic()

    await wait_until(lambda: any(op.get("op") == 7 for _, op in fake.voice_ops), 30, "a voice RESUME")
    await wait_for_master(sent)
    await hearing(fake, crashed_at + 0.1, packets=5)  # the same render was heard again after the resume
    assert not any("lost the voice connection" in t for t in sent.texts), sent.texts  # a resume is seamless
    await say_works(narrator)


async def test_unresponsive_voice_server_tells_the_user_and_keeps_serving(narrator: Narrator) -> None:
    """The voice server goes quiet and drops the socket: the bot's resume times out; its user hears why."""
    fake = narrator.fake
    sent = await narrator.say(LONG_LINE * 2)
    await hearing(fake, sent.sent_at, packets=10)
    fake.fault_voice_silent()
    await fake.fault_close_voice(GUILD, 4015)

    await wait_until(lambda: any("lost the voice connection" in t for t in sent.texts), 30, "the user to be told")
    await wait_for_master(sent)  # the recording is still posted
    fake.fault_voice_silent(False)  # the server is back while discord.py may still be trying to resume
    await say_works(narrator)


# 8 ---------------------------------------------------------------------------------------------------------------------
async def test_restart_with_a_render_in_progress(narrator: Narrator) -> None:
    fake = narrator.fake
    sent = await narrator.say(LONG_LINE * 2)
    await hearing(fake, sent.sent_at, packets=5)
    assert database_check(narrator)[1] == [(ADMIN, "running")]

    await narrator.stop()
    assert any("restarting" in t for t in sent.texts), sent.texts
    assert database_check(narrator) == ("ok", [(ADMIN, "running")])  # left for the next start to report

    await narrator.start()
    text_channel = fake.guilds[GUILD].text_channel
    await wait_until(lambda: fake.channel_messages(text_channel), 30, "the interrupted-render notice")
    (notice,) = fake.channel_messages(text_channel)
    assert f"<@{ADMIN}>" in notice.content and "interrupted" in notice.content
    assert [int(u) for u in notice.json["allowed_mentions"]["users"]] == [ADMIN]  # only the owner is pinged
    assert database_check(narrator) == ("ok", [(ADMIN, "interrupted")])
    await say_works(narrator)
    assert database_check(narrator)[1] == [(ADMIN, "interrupted"), (ADMIN, "done")]


# HTTP 429 and gateway RECONNECT ----------------------------------------------------------------------------------------
async def test_rate_limited_upload_and_gateway_reconnect_mid_stream(narrator: Narrator) -> None:
    fake = narrator.fake
    fake.fault_rate_limit("POST", "/webhooks/", times=1, retry_after=0.3)  # the master's followup: retried
    fake.fault_rate_limit("POST", "/interactions/", times=1, retry_after=0.2)  # the deferral: retried
    sent = await narrator.say(LONG_LINE)
    await hearing(fake, sent.sent_at, packets=10)
    await fake.fault_gateway_reconnect()
    await wait_until(lambda: fake.resumes == 1, 30, "a gateway RESUME")

    await wait_for_master(sent)
    assert sent.deferred and fake.identifies == 1
    assert sorted(c.path.split("/")[1] for c in fake.rate_limited) == ["interactions", "webhooks"]
    assert any(c.files for c in fake.rate_limited), "the 429 did not hit the upload"
    await say_works(narrator)  # commands still arrive on the resumed gateway

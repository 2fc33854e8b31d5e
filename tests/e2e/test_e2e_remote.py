"""The real bot rendering on two `narrator serve` servers (our engine on tiny checkpoints, each in its own thread and
event loop on 127.0.0.1): a /say is heard; a server killed mid-render moves later renders to the other; and two bot
instances with two of four shards each serve guilds of their shards against the fake Discord."""

from __future__ import annotations

import dataclasses
import logging

import httpx
import pytest
import pytest_asyncio

from bot.engine.servers import ServerPool
from bot.serve.state import ServeConfig
from tests.e2e.conftest import ADMIN, GUILD, MEMBER, Narrator, packets_since, wait_for_master
from tests.fakediscord.audio import audible_span
from tests.fakediscord.harness import wait_until
from tests.fakediscord.shards import shard_of
from tests.serving import ServerThread, tiny_engine

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio, pytest.mark.timeout(900)]
log = logging.getLogger(__name__)

LONG_LINE = "This line keeps the narrator talking for a good while. " * 2


def _speech_requests(server: ServerThread) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    rows = [r for r in text.splitlines() if r.startswith('narrator_requests_total{route="/v1/audio/speech"')]
    return sum(float(r.rsplit(" ", 1)[1]) for r in rows)


def _active(server: ServerThread) -> int:
    return httpx.get(f"{server.url}/health").json()["streams"]


@pytest.fixture
def servers(e2e_settings, tmp_path):
    checkpoints = (e2e_settings.custom_voice_model, e2e_settings.base_model)
    first = ServerThread(tiny_engine(*checkpoints), ServeConfig(data_dir=tmp_path / "serve-a"))
    second = ServerThread(tiny_engine(*checkpoints), ServeConfig(data_dir=tmp_path / "serve-b"))
    with first, second:
        yield first, second


@pytest.fixture
def remote_settings(e2e_settings, servers):
    return dataclasses.replace(e2e_settings, engine_urls=tuple(s.url for s in servers), remote_workers=2)


@pytest_asyncio.fixture
async def remote_bot(fake_discord, remote_settings):
    fake_discord.add_guild(GUILD, [ADMIN, MEMBER])
    runner = Narrator(fake_discord, remote_settings)
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


async def test_say_on_remote_engines_is_heard(remote_bot, servers) -> None:
    before = [_speech_requests(s) for s in servers]
    sent = await remote_bot.say("[Calm] Hello. [Pause 0.3s] [Excited] From a remote engine!")
    master, rate, _ = await wait_for_master(sent, 180)
    assert rate == 24_000 and len(master) > rate // 2
    await wait_until(lambda: audible_span(packets_since(remote_bot.fake, GUILD, sent.sent_at)), 30, "audio in voice")
    engine = remote_bot.bot.services.workers[0].narrator.engine
    assert engine.describe()["engine"] == "remote"
    home = ServerPool([s.url for s in servers]).order(str(GUILD))[0].url
    grew = [_speech_requests(s) - b for s, b in zip(servers, before, strict=True)]
    assert grew[[s.url for s in servers].index(home)] >= 2 and sum(grew) == grew[[s.url for s in servers].index(home)]


async def test_killing_a_server_mid_render_moves_new_renders_to_the_other(remote_bot, servers) -> None:
    home_url = ServerPool([s.url for s in servers]).order(str(GUILD))[0].url
    home = next(s for s in servers if s.url == home_url)
    other = next(s for s in servers if s.url != home_url)
    doomed = await remote_bot.say(LONG_LINE)
    await wait_until(lambda: _active(home) > 0, 60, "the render to reach its server")
    home.kill()
    settled = lambda: [st for _, st in remote_bot.render_statuses()][:1] not in ([], ["queued"], ["running"])  # noqa: E731
    await wait_until(settled, 60, "the interrupted render to end")
    assert doomed.edits, "the member was never told about the interrupted render"
    before = _speech_requests(other)
    sent = await remote_bot.say("After the crash.")
    master, _, _ = await wait_for_master(sent, 180)
    assert len(master) > 0 and _speech_requests(other) > before
    statuses = [status for _, status in remote_bot.render_statuses()]
    # The interrupted render either failed with a clear message (killed inside a segment whose audio was heard) or
    # finished on the other server (killed between segments: the next segment failed over before any audio).
    log.info("interrupted render ended %s", statuses[0])
    assert statuses[-1] == "done" and statuses[0] not in ("queued", "running"), statuses


async def test_two_bots_with_two_shards_each_serve_their_guilds(fake_discord, remote_settings) -> None:
    count = 4
    guilds = [(k << 22) + 3000 for k in range(count)]  # one guild on each shard
    assert [shard_of(g, count) for g in guilds] == [0, 1, 2, 3]
    for guild in guilds:
        fake_discord.add_guild(guild, [ADMIN, MEMBER])
    bots = []
    for shard_ids in ((0, 1), (2, 3)):
        settings = dataclasses.replace(remote_settings, shard_count=count, shard_ids=shard_ids, dev_guild_id=None)
        bot = Narrator(fake_discord, settings)
        await bot.start()
        bots.append(bot)
    try:
        identified = sorted(tuple(op["d"]["shard"]) for op in fake_discord.gateway_ops if op["op"] == 2)
        assert identified == [(0, 4), (1, 4), (2, 4), (3, 4)]
        assert {g.id for g in bots[0].bot.guilds} == set(guilds[:2])
        assert {g.id for g in bots[1].bot.guilds} == set(guilds[2:])
        sent = [await bots[0].say("Shard one.", guild=guilds[1]), await bots[1].say("Shard two.", guild=guilds[2])]
        for one in sent:
            master, _, _ = await wait_for_master(one, 180)
            assert len(master) > 0
    finally:
        for bot in bots:
            await bot.stop()

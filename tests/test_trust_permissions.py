"""Permissions through the cogs, called the way discord.py calls them (Discord's interaction, member, channel and
permission objects are stand-ins; the bot, services, queue and audio stream are the real ones, over a scripted
engine): who may stop, skip, move the bot and make it leave, Connect/Speak in the target channel, the role gate of
every GPU command, the manage role, the consent button."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import pytest_asyncio
from discord import app_commands

from bot.app import open_bot
from bot.jobs.queue import Job
from bot.services.permissions import Caller
from bot.settings import Settings
from bot.voice.source import PCMStreamSource
from db import repo
from tests.clips import voiced_wav_bytes
from tests.scripted_engine import ScriptedEngine

pytestmark = pytest.mark.asyncio
GUILD = 10
ALICE, BOB, MOD = 1, 2, 3
ROLE, MOD_ROLE = 70, 71


def perms(**granted) -> SimpleNamespace:
    names = ("manage_guild", "move_members", "administrator", "connect", "speak")
    return SimpleNamespace(**{n: granted.get(n, False) for n in names})


def member(uid: int, roles=(), bot=False, voice_channel=None) -> SimpleNamespace:
    return SimpleNamespace(id=uid, roles=[SimpleNamespace(id=r) for r in roles], bot=bot,
                           voice=SimpleNamespace(channel=voice_channel) if voice_channel else None)  # fmt: skip


def channel(cid: int, *, members=(), allowed=True) -> SimpleNamespace:
    can = perms(connect=allowed, speak=allowed)
    return SimpleNamespace(id=cid, mention=f"<#{cid}>", members=list(members), permissions_for=lambda m: can)


class Log:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bool]] = []
        self.done = False

    def is_done(self) -> bool:
        return self.done

    async def send_message(self, content=None, *, ephemeral=False, **kw) -> None:
        self.done = True
        self.sent.append(("send", content, ephemeral))

    async def defer(self, *, ephemeral=False, thinking=False) -> None:
        self.done = True
        self.sent.append(("defer", None, ephemeral))

    async def send(self, content=None, *, ephemeral=False, **kw) -> None:  # followup
        self.sent.append(("followup", content, ephemeral))


def interaction(user, *, manage=False, bot_channel=None) -> SimpleNamespace:
    log = Log()
    guild = SimpleNamespace(id=GUILD, voice_client=SimpleNamespace(channel=bot_channel) if bot_channel else None)
    return SimpleNamespace(id=99, guild_id=GUILD, channel_id=5, user=user, guild=guild, response=log, followup=log,
                           permissions=perms(manage_guild=manage), command=None, log=log.sent,
                           channel=SimpleNamespace(send=_channel_send(log)))  # fmt: skip


def _channel_send(log: Log):
    async def send(content, **kw):
        log.sent.append(("channel", content, False))

    return send


@pytest_asyncio.fixture
async def bot(tmp_path):
    settings = Settings(
        custom_voice_model="scripted/custom-voice", device="cpu", data_dir=tmp_path / "d", outputs_dir=tmp_path / "o",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'n.db'}",
    )  # fmt: skip
    async with open_bot(settings, engines=[ScriptedEngine()], sync_commands=False) as bot:
        await bot.setup_hook()
        yield bot


async def run(bot, command: str, inter, **options) -> None:
    cmd = bot.tree.get_command(command.split()[0])
    for part in command.split()[1:]:
        cmd = cmd.get_command(part)
    try:
        await cmd.callback(cmd.binding, inter, **options)
    except Exception as exc:
        error = exc if isinstance(exc, app_commands.AppCommandError) else app_commands.CommandInvokeError(cmd, exc)
        await bot.tree.on_error(inter, error)


def _blocking_job(user: int, release: asyncio.Event) -> Job:
    async def work(job, worker):
        await release.wait()

    return Job(GUILD, user, work, label=f"job of {user}")


async def test_a_member_stops_only_their_own_renders_a_moderator_stops_all(bot) -> None:
    queue, release = bot.services.queue, asyncio.Event()
    alice = [_blocking_job(ALICE, release), _blocking_job(ALICE, release)]
    bobs = _blocking_job(BOB, release)
    for job in (*alice, bobs):
        queue.submit(job)
    i = interaction(member(ALICE))
    await run(bot, "stop", i)
    assert i.log[-1] == ("send", "Stopped your 2 render(s).", True)
    assert all(j.cancelled for j in alice) and not bobs.cancelled
    i = interaction(member(ALICE))
    await run(bot, "stop", i)
    assert i.log[-1][1] == "You have no render to stop."
    i = interaction(member(MOD), manage=True)
    await run(bot, "stop", i)
    assert i.log[-1] == ("send", "Stopped. 1 render(s) cancelled.", False) and bobs.cancelled
    release.set()


async def test_skipping_someone_elses_narration_needs_a_moderator_or_the_manage_role(bot) -> None:
    services = bot.services
    source = PCMStreamSource()
    services.playback._sources[GUILD] = source  # the guild's live stream, as the first audio of a render starts it
    services.say.job_owners[501] = BOB  # Bob's render finished; its audio still plays
    source.feed(501, bytes(3840 * 10))
    i = interaction(member(ALICE))
    await run(bot, "skip", i)
    assert "Skipping someone else's narration needs" in i.log[-1][1] and i.log[-1][2] is True
    assert services.playback.playing_tag(GUILD) == 501
    await services.guild_config.update(GUILD, manage_role_id=MOD_ROLE)
    i = interaction(member(ALICE))
    await run(bot, "skip", i)
    assert f"<@&{MOD_ROLE}>" in i.log[-1][1]  # the refusal names the role that would do
    i = interaction(member(MOD, roles=[MOD_ROLE]))
    await run(bot, "skip", i)
    assert i.log[-1][1] == "Skipped." and services.playback.playing_tag(GUILD) is None
    services.say.job_owners[502] = BOB
    source.feed(502, bytes(3840 * 10))
    i = interaction(member(BOB))  # one's own: always
    await run(bot, "skip", i)
    assert i.log[-1][1] == "Skipped."


async def test_moving_the_bot_away_from_listeners_and_leave_need_a_moderator(bot) -> None:
    listening = channel(40, members=[member(BOB), member(99, bot=True)])
    mine = channel(41)
    i = interaction(member(ALICE, voice_channel=mine), bot_channel=listening)
    await run(bot, "join", i, channel=None)
    assert "Moving me away from <#40>" in i.log[-1][1] and "Join <#40>" in i.log[-1][1]
    i = interaction(member(ALICE, voice_channel=mine), bot_channel=listening)
    await run(bot, "say", i, script="Hello.", voice=None, channel=None)
    assert "Moving me away" in i.log[-1][1] and len(bot.services.queue) == 0
    i = interaction(member(ALICE), bot_channel=listening)
    await run(bot, "leave", i)
    assert "Making me leave the voice channel needs" in i.log[-1][1]

    permissions = bot.services.permissions
    alone = channel(42, members=[member(99, bot=True)])
    guild = SimpleNamespace(id=GUILD, voice_client=SimpleNamespace(channel=alone))
    await permissions.check_move(guild, Caller(ALICE, frozenset(), False), mine)  # nobody listens there: free
    guild.voice_client.channel = listening
    await permissions.check_move(guild, Caller(ALICE, frozenset(), False), listening)  # joining them: free
    await permissions.check_move(guild, Caller(MOD, frozenset(), True), mine)  # a moderator may


async def test_the_caller_needs_connect_and_speak_where_they_send_the_bot(bot) -> None:
    forbidden = channel(43, allowed=False)
    i = interaction(member(ALICE, voice_channel=channel(41)))
    await run(bot, "say", i, script="Hello.", voice=None, channel=forbidden)
    assert i.log == [("send", "You need the Connect and Speak permissions in <#43> to have me speak there.", True)]
    i = interaction(member(ALICE), manage=True)
    await run(bot, "join", i, channel=forbidden)
    assert "Connect and Speak" in i.log[-1][1]  # moderators too: the bot is no way around a channel's rules


async def test_the_required_role_covers_every_gpu_command(bot) -> None:
    await bot.services.guild_config.update(GUILD, required_role_id=ROLE)
    i = interaction(member(ALICE))
    await run(bot, "voice design", i, description="a warm low voice", name="mine")
    assert f"<@&{ROLE}>" in i.log[-1][1] and "/voice design" in i.log[-1][1] and i.log[0][0] == "send"
    i = interaction(member(ALICE), manage=True)
    await run(bot, "voices design", i, name="lib", description="a warm low voice")
    assert "/voices design" in i.log[-1][1]
    sample = SimpleNamespace(size=1000, filename="a.wav")
    i = interaction(member(ALICE), manage=True)
    await run(bot, "voices register", i, name="x", sample=sample, transcript="hi", consent=True, speaker=None)
    assert "/voices register" in i.log[-1][1]
    i = interaction(member(ALICE, voice_channel=channel(41)))
    await run(bot, "say", i, script="Hello.", voice=None, channel=None)
    assert f"<@&{ROLE}>" in i.log[-1][1]
    assert len(bot.services.queue) == 0 and not bot.services.queue.running()
    i = interaction(member(ALICE, roles=[ROLE]))
    await run(bot, "voice design", i, description="a warm low voice", name="mine")
    assert "Designed and locked **mine**" in i.log[-1][1]


async def test_settings_manage_role_is_shown(bot) -> None:
    i = interaction(member(MOD), manage=True)
    await run(bot, "settings manage_role", i, role=SimpleNamespace(id=MOD_ROLE))
    assert f"move me or make me leave: Manage Server / Move Members, or <@&{MOD_ROLE}>" in i.log[-1][1]


async def test_register_names_the_speaker_who_confirms_with_the_button(bot) -> None:
    data = voiced_wav_bytes(2.0)

    async def read():
        return data

    sample = SimpleNamespace(size=len(data), filename="r.wav", read=read)
    i = interaction(member(ALICE), manage=True)
    await run(bot, "voices register", i, name="Reader", sample=sample, transcript="hello", consent=True,
              speaker=member(BOB))  # fmt: skip
    (request,) = [text for kind, text, _ in i.log if kind == "channel"]
    assert "<@2>" in request and "/voice consent name:Reader" in request
    assert "Nobody can use it until <@2> agrees" in i.log[-1][1]
    with pytest.raises(Exception, match="consent"):
        await bot.services.library.resolve(GUILD, ALICE, "Reader")

    from cogs.voices import ConsentButton

    click = interaction(member(ALICE))
    click.client = bot
    voice_id = (await bot.services.consent.mine(BOB))[0].id
    await ConsentButton("yes", voice_id).callback(click)
    assert "Only the person" in click.log[-1][1]
    click = interaction(member(BOB))
    click.client = bot
    await ConsentButton("yes", voice_id).callback(click)
    assert "can now be used" in click.log[-1][1]
    assert (await bot.services.library.resolve(GUILD, ALICE, "reader")).usable
    i = interaction(member(BOB))
    await run(bot, "voice mine", i)
    assert "**Reader**" in i.log[-1][1] and "you agreed on" in i.log[-1][1]
    i = interaction(member(BOB))
    await run(bot, "voice revoke", i, name="reader")
    assert "Deleted **Reader**" in i.log[-1][1]
    assert await bot.services.library.list(GUILD, ALICE) == []


async def test_personal_voice_delete_command(bot) -> None:
    await bot.services.library.add(repo.NewVoice(GUILD, ALICE, "personal", "designed", "Mine", timbre=b"\0" * 64))
    i = interaction(member(BOB))
    await run(bot, "voice delete", i, name="mine")
    assert "no personal voice called `mine`" in i.log[-1][1]
    i = interaction(member(ALICE))
    await run(bot, "voice delete", i, name="MINE")
    assert i.log[-1][1] == "Deleted your voice **Mine**."

"""Cog glue called the way discord.py calls it, with duck-typed stand-ins for Discord's interaction objects."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import pytest_asyncio
from discord import app_commands

from bot.app import open_bot
from bot.settings import Settings
from db import repo

GUILD, ALICE = 10, 1


class FakeResponse:
    def __init__(self, log: list) -> None:
        self.log = log
        self.done = False

    def is_done(self) -> bool:
        return self.done

    async def send_message(self, content=None, *, ephemeral=False, **kw) -> None:
        self.done = True
        self.log.append(("send", content, ephemeral))

    async def defer(self, *, ephemeral=False, thinking=False) -> None:
        self.done = True
        self.log.append(("defer", None, ephemeral))


class FakeFollowup:
    def __init__(self, log: list) -> None:
        self.log = log

    async def send(self, content=None, *, ephemeral=False, **kw) -> None:
        self.log.append(("followup", content, ephemeral))


def interaction(user_id: int = ALICE, voice_channel=None) -> SimpleNamespace:
    log: list = []
    user = SimpleNamespace(id=user_id, voice=SimpleNamespace(channel=voice_channel) if voice_channel else None,
                           roles=[], bot=False)  # fmt: skip
    return SimpleNamespace(
        id=99, guild_id=GUILD, channel_id=5, user=user, guild=SimpleNamespace(id=GUILD, voice_client=None),
        response=FakeResponse(log), followup=FakeFollowup(log), command=None, log=log,
    )  # fmt: skip


@pytest_asyncio.fixture
async def bot(tmp_path: Path, tiny_custom_voice):
    settings = Settings(
        custom_voice_model=str(tiny_custom_voice), base_model=None, voice_design_model=None,
        device="cpu", data_dir=tmp_path / "d", outputs_dir=tmp_path / "o",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'n.db'}",
    )  # fmt: skip
    async with open_bot(settings, sync_commands=False) as bot:
        await bot.setup_hook()
        yield bot


async def run(bot, command: str, inter, **options) -> None:
    """Invoke like the tree does: the callback, and any error through the tree's one error handler."""
    cmd = bot.tree.get_command(command.split()[0])
    for part in command.split()[1:]:
        cmd = cmd.get_command(part)
    try:
        await cmd.callback(cmd.binding, inter, **options)
    except Exception as exc:
        error = exc if isinstance(exc, app_commands.AppCommandError) else app_commands.CommandInvokeError(cmd, exc)
        await bot.tree.on_error(inter, error)


@pytest.mark.asyncio
async def test_voice_lock_show_unlock_list(bot) -> None:
    await bot.services.library.add(repo.NewVoice(GUILD, 2, "guild", "preset", "Storyteller", speaker="ryan"))
    i = interaction()
    await run(bot, "voice lock", i, name="storyteller")
    assert i.log[-1][2] is True and "Locked" in i.log[-1][1] and "Storyteller" in i.log[-1][1]
    i = interaction()
    await run(bot, "voice show", i)
    assert "Storyteller" in i.log[-1][1]
    i = interaction()
    await run(bot, "voice list", i)
    assert "Storyteller" in i.log[-1][1]
    i = interaction()
    await run(bot, "voice unlock", i)
    assert "Unlocked" in i.log[-1][1]
    i = interaction()
    await run(bot, "voice lock", i, name="ghost")
    assert i.log[-1][2] is True and "no voice called `ghost`" in i.log[-1][1]


@pytest.mark.asyncio
async def test_say_outside_voice_is_a_private_hint_and_queues_nothing(bot) -> None:
    i = interaction(voice_channel=None)
    await run(bot, "say", i, script="Hello", voice=None, channel=None)
    assert len(i.log) == 1 and i.log[0][0] == "send" and i.log[0][2] is True
    assert "Join a voice channel" in i.log[0][1]
    assert len(bot.services.queue) == 0


@pytest.mark.asyncio
async def test_malformed_say_is_refused_before_deferring(bot) -> None:
    can_speak = SimpleNamespace(connect=True, speak=True)
    i = interaction(voice_channel=SimpleNamespace(id=7, mention="#voice", permissions_for=lambda member: can_speak))
    await run(bot, "say", i, script="[Whispering hello", voice=None, channel=None)
    assert [kind for kind, *_ in i.log] == ["send"] and i.log[0][2] is True
    assert "character 1" in i.log[0][1]


@pytest.mark.asyncio
async def test_queue_stop_skip_when_idle(bot) -> None:
    i = interaction()
    await run(bot, "queue", i)
    assert i.log[-1] == ("send", "The queue is empty.", True)
    i = interaction()
    await run(bot, "skip", i)
    assert i.log[-1] == ("send", "Nothing is playing.", True)


@pytest.mark.asyncio
async def test_settings_and_library_removal(bot) -> None:
    i = interaction()
    await run(bot, "settings max_script", i, characters=300)
    assert "Max script length: 300" in i.log[-1][1]
    i = interaction()
    await run(bot, "settings auto_leave", i, enabled=False)
    assert "Leave when alone: no" in i.log[-1][1]
    await bot.services.library.add(repo.NewVoice(GUILD, ALICE, "personal", "designed", "Mine", timbre=b"\0" * 128))
    i = interaction()
    await run(bot, "settings default_voice", i, name="mine")
    assert "personal voice" in i.log[-1][1] and i.log[-1][2] is True
    await bot.services.library.add(repo.NewVoice(GUILD, 2, "guild", "preset", "Old", speaker="ryan"))
    i = interaction()
    await run(bot, "settings default_voice", i, name="old")
    assert "Default voice: Old" in i.log[-1][1]
    i = interaction()
    await run(bot, "voices remove", i, name="old")
    assert "Removed **Old**" in i.log[-1][1]
    i = interaction()
    await run(bot, "voices remove", i, name="old")
    assert "no library voice called `old`" in i.log[-1][1] and i.log[-1][2] is True


@pytest.mark.asyncio
async def test_unexpected_error_is_logged_and_answered_politely(bot, caplog) -> None:
    i = interaction()

    async def broken(*args, **kwargs):
        raise RuntimeError("database on fire")

    bot.services.library.list = broken
    await run(bot, "voice list", i)
    assert "Sorry, something went wrong" in i.log[-1][1] and i.log[-1][2] is True
    assert "database on fire" in caplog.text

"""Chat narration storage: settings with defaults and checks, bound channels, nicknames, pronunciation rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio

from db import chat
from db.engine import Database, open_database
from db.errors import InvalidSetting
from tests import db_backends

GUILD, OTHER_GUILD, ALICE, BOB = 111, 222, 1, 2
TEXT, OTHER_TEXT, VOICE = 501, 502, 601


@pytest.fixture(params=db_backends.BACKENDS)
def db_url(request, tmp_path: Path):
    yield from db_backends.fresh_url(request.param, tmp_path)


@pytest_asyncio.fixture
async def database(db_url: str):
    db = await open_database(db_url)
    yield db
    await db.close()


@pytest.mark.asyncio
async def test_chat_settings_default_then_persist(database: Database) -> None:
    async with database.sessions.begin() as s:
        defaults = await chat.get_chat_settings(s, GUILD)
        assert defaults == chat.ChatSettings(GUILD)
        assert (defaults.autojoin, defaults.require_author_in_voice, defaults.skip_prefix, defaults.read_prefix) == (
            False, True, "!", None)  # fmt: skip
        assert (defaults.announce_names, defaults.name_template, defaults.max_message_seconds) == (
            True, "{name} said", 30)  # fmt: skip
        assert defaults.emotion_tags_in_chat is True
        await chat.update_chat_settings(s, GUILD, autojoin=True, read_prefix=">", max_message_seconds=120)
    async with database.sessions.begin() as s:
        stored = await chat.get_chat_settings(s, GUILD)
        assert stored.autojoin and stored.read_prefix == ">" and stored.max_message_seconds == 120
        assert stored.skip_prefix == "!" and stored.name_template == "{name} said"  # untouched ones keep defaults
        assert (await chat.update_chat_settings(s, GUILD, read_prefix=None)).read_prefix is None
        assert await chat.get_chat_settings(s, OTHER_GUILD) == chat.ChatSettings(OTHER_GUILD)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"max_message_seconds": 4}, "5 to 120"),
        ({"max_message_seconds": 121}, "5 to 120"),
        ({"max_message_seconds": True}, "5 to 120"),
        ({"skip_prefix": ""}, "skip_prefix"),
        ({"skip_prefix": None}, "skip_prefix"),
        ({"read_prefix": " >"}, "read_prefix"),
        ({"name_template": "said"}, "{name}"),
        ({"name_template": "{name} said {what}"}, "only {name}"),
        ({"autojoin": "yes"}, "on or off"),
        ({"volume": 3}, "unknown chat setting"),
    ],
)
async def test_bad_chat_settings_are_refused_and_nothing_is_stored(database: Database, values, words) -> None:
    async with database.sessions.begin() as s:
        with pytest.raises(InvalidSetting, match=words.replace("{", r"\{").replace("}", r"\}")):
            await chat.update_chat_settings(s, GUILD, **({"max_message_seconds": 60} | values))
    async with database.sessions() as s:
        assert await chat.get_chat_settings(s, GUILD) == chat.ChatSettings(GUILD)


@pytest.mark.asyncio
async def test_binding_channels(database: Database) -> None:
    async with database.sessions.begin() as s:
        await chat.bind_channel(s, GUILD, TEXT)
        await chat.bind_channel(s, GUILD, OTHER_TEXT, VOICE)
        await chat.bind_channel(s, OTHER_GUILD, 777)
        rebound = await chat.bind_channel(s, GUILD, TEXT, VOICE)  # binding again moves it
    assert rebound.voice_channel_id == VOICE
    async with database.sessions.begin() as s:
        assert [b.text_channel_id for b in await chat.bound_channels(s, GUILD)] == [TEXT, OTHER_TEXT]
        assert len(await chat.all_bound_channels(s)) == 3
        assert (await chat.bound_channel(s, GUILD, TEXT)).voice_channel_id == VOICE
        assert await chat.bound_channel(s, OTHER_GUILD, TEXT) is None
        assert await chat.unbind_channel(s, GUILD, TEXT)
        assert not await chat.unbind_channel(s, GUILD, TEXT)
    async with database.sessions() as s:
        assert [b.text_channel_id for b in await chat.bound_channels(s, GUILD)] == [OTHER_TEXT]


@pytest.mark.asyncio
async def test_nicknames_per_guild_and_user(database: Database) -> None:
    async with database.sessions.begin() as s:
        assert await chat.set_nickname(s, GUILD, ALICE, "  Ally  the  Great ") == "Ally the Great"
        await chat.set_nickname(s, GUILD, ALICE, "Ally")
        await chat.set_nickname(s, OTHER_GUILD, ALICE, "Alice")
        with pytest.raises(InvalidSetting, match="1 to 64"):
            await chat.set_nickname(s, GUILD, BOB, "   ")
    async with database.sessions.begin() as s:
        assert await chat.get_nickname(s, GUILD, ALICE) == "Ally"
        assert await chat.get_nickname(s, OTHER_GUILD, ALICE) == "Alice"
        assert await chat.get_nickname(s, GUILD, BOB) is None
        assert await chat.clear_nickname(s, GUILD, ALICE) and not await chat.clear_nickname(s, GUILD, ALICE)
        assert await chat.get_nickname(s, GUILD, ALICE) is None


@pytest.mark.asyncio
async def test_dictionary_rules_per_guild_and_user_with_counts(database: Database) -> None:
    async with database.sessions.begin() as s:
        await chat.add_rule(s, GUILD, None, "gif", "jif")
        await chat.add_rule(s, GUILD, None, r"\bk8s\b", "kubernetes", is_regex=True)
        await chat.add_rule(s, GUILD, ALICE, "gif", "gift")
        await chat.add_rule(s, OTHER_GUILD, None, "x", "y")
        again = await chat.add_rule(s, GUILD, None, "GIF", "ghif")  # same plain pattern in any case: replaced
        await chat.add_rule(s, GUILD, None, "Ærø", "airo")
        await chat.add_rule(s, GUILD, None, r"\bK8S\b", "kates", is_regex=True)  # a regex is compared exactly
    assert again.replacement == "ghif" and again.user_id is None and not again.is_regex
    async with database.sessions.begin() as s:
        assert await chat.remove_rule(s, GUILD, None, "ÆRØ") == 1
        assert await chat.remove_rule(s, GUILD, None, r"\bK8S\b") == 1
    async with database.sessions.begin() as s:
        assert await chat.count_rules(s, GUILD, None) == 2
        assert await chat.count_rules(s, GUILD, ALICE) == 1
        assert await chat.count_rules(s, GUILD, BOB) == 0
        applied = await chat.rules_for(s, GUILD, ALICE)
        assert [(r.user_id, r.pattern, r.replacement) for r in applied] == [
            (ALICE, "gif", "gift"), (None, "GIF", "ghif"), (None, r"\bk8s\b", "kubernetes")]  # fmt: skip
        assert [r.pattern for r in await chat.rules_for(s, GUILD, BOB)] == ["GIF", r"\bk8s\b"]
        assert await chat.remove_rule(s, GUILD, ALICE, "Gif") == 1
        assert await chat.remove_rule(s, GUILD, ALICE, "gif") == 0
        regex = (await chat.list_rules(s, GUILD, None))[1]
        assert await chat.remove_rule_by_id(s, GUILD, ALICE, regex.id) is False  # not Alice's rule
        assert await chat.remove_rule_by_id(s, GUILD, None, regex.id) is True
        with pytest.raises(InvalidSetting, match="200"):
            await chat.add_rule(s, GUILD, None, "x" * 201, "y")
    async with database.sessions.begin() as s:
        assert [r.pattern for r in await chat.list_rules(s, GUILD, None)] == ["GIF"]
        assert await chat.clear_rules(s, GUILD, None) == 1
        assert await chat.count_rules(s, OTHER_GUILD, None) == 1


@pytest.mark.asyncio
async def test_forgetting_a_guild_removes_only_its_chat_data(database: Database) -> None:
    async with database.sessions.begin() as s:
        for guild in (GUILD, OTHER_GUILD):
            await chat.update_chat_settings(s, guild, autojoin=True)
            await chat.bind_channel(s, guild, TEXT + guild)
            await chat.set_nickname(s, guild, ALICE, "Ally")
            await chat.add_rule(s, guild, ALICE, "a", "b")
    async with database.sessions.begin() as s:
        await chat.forget_guild_chat(s, GUILD)
    async with database.sessions() as s:
        assert await chat.get_chat_settings(s, GUILD) == chat.ChatSettings(GUILD)
        assert await chat.bound_channels(s, GUILD) == [] and await chat.get_nickname(s, GUILD, ALICE) is None
        assert await chat.count_rules(s, GUILD, ALICE) == 0
        assert (await chat.get_chat_settings(s, OTHER_GUILD)).autojoin
        assert await chat.count_rules(s, OTHER_GUILD, ALICE) == 1

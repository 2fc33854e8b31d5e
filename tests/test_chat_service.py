"""Chat narration below Discord: the reading-queue policy, the pronunciation dictionary service, chat settings and
bindings, the dictionary on /say, and how the chat service chooses what to read, in whose voice, with which name.
The end-to-end path through the fake Discord is in tests/e2e/test_e2e_chat.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import pytest_asyncio

from bot.app import Services
from bot.chat.backlog import Backlog, Item, State
from bot.chat.message import ChatMessage, MappingResolver
from bot.errors import UserError
from bot.services.chat import Pending
from bot.services.chat_config import ChatConfig
from bot.settings import Settings
from db import repo
from db.engine import open_database
from tests.services import services_for

GUILD, CHANNEL, ALICE, BOB = 10, 11, 1, 2


# -- the backlog (pure) ----------------------------------------------------------------------------------------------


def items(*ids: int) -> list[Item]:
    return [Item(i, payload=f"text {i}") for i in ids]


def never(_item: Item) -> bool:
    return False


def test_backlog_renders_one_at_a_time_in_order_with_one_message_ready_ahead() -> None:
    backlog = Backlog()
    for item in items(1, 2, 3):
        assert backlog.add(item, never) == []
    first = backlog.next_to_render()
    assert first.message_id == 1
    first.state = State.RENDERING
    assert backlog.next_to_render() is None  # one render at a time
    backlog.rendered(first)
    second = backlog.next_to_render()
    assert second.message_id == 2  # renders while the first plays
    backlog.rendered(second)
    assert backlog.next_to_render() is None  # two ready: wait for the listener
    assert [i.message_id for i in backlog.played(lambda i: i is first)] == [1]
    assert backlog.next_to_render().message_id == 3


def test_backlog_drops_the_oldest_waiting_beyond_five_never_the_one_being_spoken() -> None:
    backlog = Backlog()
    speaking = items(1)[0]
    backlog.add(speaking, never)
    speaking.state = State.RENDERED
    dropped: list[int] = []
    for item in items(2, 3, 4, 5, 6, 7, 8):
        dropped += [d.message_id for d in backlog.add(item, lambda i: i is speaking)]
    assert dropped == [2, 3]
    assert [i.message_id for i in backlog.items] == [1, 4, 5, 6, 7, 8]
    # nothing is being spoken yet: the oldest goes, whatever its state
    fresh = Backlog(max_waiting=2)
    for item in items(1, 2, 3):
        fresh.add(item, never)
    assert [i.message_id for i in fresh.items] == [2, 3]


def test_backlog_edits_before_speaking_and_leaves_the_spoken_one_alone() -> None:
    backlog = Backlog()
    waiting, rendered, speaking = items(1, 2, 3)
    for item in (speaking, rendered, waiting):
        backlog.add(item, never)
    speaking.state = rendered.state = State.RENDERED
    rendered.job = "job"

    def is_speaking(item: Item) -> bool:
        return item is speaking

    assert backlog.edit(1, "edited 1", is_speaking) == (waiting, False)
    assert waiting.payload == "edited 1"
    assert backlog.edit(2, "edited 2", is_speaking) == (rendered, True)  # must render again
    assert rendered.state is State.WAITING and rendered.job is None and rendered.payload == "edited 2"
    assert backlog.edit(3, "edited 3", is_speaking) == (speaking, False)
    assert speaking.payload == "text 3"
    assert backlog.edit(99, "x", is_speaking) == (None, False)
    assert backlog.remove(1) is waiting and backlog.find(1) is None


# -- services over a real database -----------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def services(tmp_path: Path):
    settings = Settings(
        device="cpu",
        data_dir=tmp_path / "data",
        outputs_dir=tmp_path / "out",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'n.db'}",
    )
    db = await open_database(settings.database_url)
    yield services_for(settings, db)
    await db.close()


@pytest.mark.asyncio
async def test_member_rules_win_over_the_guild_and_edits_reach_the_cache(services: Services) -> None:
    rules = services.dictionary
    await rules.add(GUILD, None, "gg", "good game", False)
    await rules.add(GUILD, None, "brb", "be right back", False)
    assert (await rules.for_member(GUILD, ALICE)).apply("gg, brb").text == "good game, be right back"
    await rules.add(GUILD, ALICE, "GG", "get good", False)
    assert (await rules.for_member(GUILD, ALICE)).apply("gg!").text == "get good!"
    assert (await rules.for_member(GUILD, BOB)).apply("gg!").text == "good game!"
    await rules.add(GUILD, ALICE, "gg", "great going", False)  # the same pattern again replaces it
    assert [r.replacement for r in await rules.list(GUILD, ALICE)] == ["great going"]
    assert await rules.remove(GUILD, ALICE, "gg") == 1
    assert (await rules.for_member(GUILD, ALICE)).apply("gg").text == "good game"
    with pytest.raises(UserError, match="no rule"):
        await rules.remove(GUILD, ALICE, "gg")


@pytest.mark.asyncio
async def test_rule_limits_and_unusable_regexes_are_refused_with_a_sentence(services: Services) -> None:
    rules = services.dictionary
    for k in range(50):
        await rules.add(GUILD, ALICE, f"word{k}", "x", False)
    with pytest.raises(UserError, match="full \\(50 rules\\)"):
        await rules.add(GUILD, ALICE, "one more", "x", False)
    await rules.add(GUILD, ALICE, "word0", "changed", False)  # replacing an existing one still works when full
    with pytest.raises(UserError, match="backreferences"):
        await rules.add(GUILD, BOB, r"(a)\1", "x", True)
    with pytest.raises(UserError, match="empty text"):
        await rules.add(GUILD, BOB, r"a*", "x", True)
    assert await rules.list(GUILD, BOB) == []


@pytest.mark.asyncio
async def test_import_reports_every_bad_entry_and_changes_nothing_then_round_trips(services: Services) -> None:
    rules = services.dictionary
    await rules.add(GUILD, None, "keep", "kept", False)
    bad = json.dumps(
        [{"pattern": "ok", "replacement": "fine"}, {"pattern": "", "replacement": "x"}, {"pattern": "a"},
         {"pattern": "(b)\\1", "replacement": "y", "regex": True}], indent=1,
    ).encode()  # fmt: skip
    with pytest.raises(UserError) as info:
        await rules.import_file(GUILD, None, bad)
    text = str(info.value)
    assert "3 problems" in text and "entry 2" in text and "entry 3" in text and "entry 4" in text, text
    assert [r.pattern for r in await rules.list(GUILD, None)] == ["keep"]

    exported = await rules.export(GUILD, None)
    await rules.add(GUILD, None, "extra", "more", True)
    assert await rules.import_file(GUILD, None, exported.encode()) == 1  # replaces: back to what was exported
    assert [(r.pattern, r.replacement) for r in await rules.list(GUILD, None)] == [("keep", "kept")]


@pytest.mark.asyncio
async def test_a_hostile_regex_runs_in_linear_time(services: Services) -> None:
    rules = services.dictionary
    await rules.add(GUILD, None, r"(\w+\s?)+$", "words", True)  # catastrophic for a backtracking engine
    dictionary = await rules.for_member(GUILD, ALICE)
    text = " ".join(f"word{k}" for k in range(600))[:3990] + "!"
    started = time.perf_counter()
    applied = dictionary.apply(text)
    assert time.perf_counter() - started < 0.5
    assert applied.text == text and applied.fired == ()


@pytest.mark.asyncio
async def test_chat_settings_are_checked_and_bindings_persist(services: Services) -> None:
    config = services.chat_config
    with pytest.raises(UserError, match="\\{name\\}"):
        await config.update(GUILD, name_template="hello")
    with pytest.raises(UserError, match="must differ"):
        await config.update(GUILD, skip_prefix="!", read_prefix="!")
    updated = await config.update(GUILD, read_prefix=">", name_template="{name}   says", autojoin=True)
    assert (updated.read_prefix, updated.name_template, updated.autojoin) == (">", "{name} says", True)
    assert (await config.update(GUILD, read_prefix="off")).read_prefix is None

    await config.bind(GUILD, CHANNEL, 99)
    await config.bind(GUILD, CHANNEL + 1, 99)
    again = ChatConfig(services.db)  # a restart: read from the database
    assert {c.text_channel_id for c in await again.bound_channels(GUILD)} == {CHANNEL, CHANNEL + 1}
    assert await again.unbind(GUILD, CHANNEL) == [CHANNEL]
    assert await again.binding(GUILD, CHANNEL) is None and await again.binding(GUILD, CHANNEL + 1) is not None
    assert await again.unbind(GUILD, None) == [CHANNEL + 1]

    assert await config.set_nickname(GUILD, ALICE, "  Ali   G ") == "Ali G"
    assert await ChatConfig(services.db).nickname(GUILD, ALICE) == "Ali G"
    with pytest.raises(UserError, match="at most 32"):
        await config.set_nickname(GUILD, ALICE, "x" * 33)
    assert await config.set_nickname(GUILD, ALICE, None) is None
    assert await config.nickname(GUILD, ALICE) is None


@pytest.mark.asyncio
async def test_say_applies_the_dictionary_outside_tags_after_checking_the_script_as_written(
    services: Services,
) -> None:
    await services.dictionary.add(GUILD, None, "calm", "peaceful", False)
    await services.dictionary.add(GUILD, ALICE, "gg", "good game", False)
    request = await services.say.prepare(GUILD, CHANNEL, ALICE, set(), "[Calm] gg, calm down.", None)
    assert request.plan.script.source == "[Calm] good game, peaceful down."
    assert request.script == "[Calm] gg, calm down."  # the render row keeps what the user wrote
    fired = request.plan.notes["dictionary"]["fired"]
    assert {(f["pattern"], f["scope"], f["count"]) for f in fired} == {("gg", "user", 1), ("calm", "guild", 1)}
    with pytest.raises(UserError, match="character 8"):  # the position in what the user typed
        await services.say.prepare(GUILD, CHANNEL, ALICE, set(), "gg gg. [Calm", None)
    plain = await services.say.prepare(GUILD, CHANNEL, BOB, set(), "[Calm] nothing to change", None)
    assert plain.plan.notes == {}


# -- the chat service ------------------------------------------------------------------------------------------------


def message(content: str, author: int = ALICE, **extra) -> ChatMessage:
    return ChatMessage(content, author_id=author, author_name={ALICE: "Alice", BOB: "Bob"}[author], id=extra.pop(
        "id", 500), guild_id=GUILD, channel_id=CHANNEL, **extra)  # fmt: skip


@pytest.mark.asyncio
async def test_only_bound_channels_and_readable_messages_get_as_far_as_voice(services: Services) -> None:
    chat = services.chat
    assert await chat.on_message(message("hello"), MappingResolver()) == "channel not bound"
    await services.chat_config.bind(GUILD, CHANNEL, None)
    assert await chat.on_message(message("hello", author_is_bot=True), MappingResolver()) == "sent by a bot"
    assert await chat.on_message(message("hi", is_webhook=True), MappingResolver()) == "sent by a webhook"
    assert await chat.on_message(message("hi", flags=1 << 12), MappingResolver()) == "sent with @silent"
    assert await chat.on_message(message("!hidden"), MappingResolver()) == "starts with the skip prefix"
    assert await chat.on_message(message("hello"), MappingResolver()) == "not in a voice channel"
    assert chat.waiting(GUILD) == 0


@pytest.mark.asyncio
async def test_the_render_request_uses_the_voice_name_and_dictionary_of_the_author(tiny_bot_settings) -> None:
    db = await open_database(tiny_bot_settings.database_url)
    try:
        services = services_for(tiny_bot_settings, db)
        chat, library = services.chat, services.library
        presets = await library.preset_speakers()
        assert len(presets) > 3
        await services.dictionary.add(GUILD, None, "gg", "good game", False)
        await services.chat_config.set_nickname(GUILD, BOB, "Bobby")

        def item(text: str, author: int, mid: int) -> Item:
            return Item(mid, Pending(message(text, author, id=mid), MappingResolver(users={BOB: "Bob"}), 0.0))

        first = await chat.request_for(item("gg <@2> **well** played", ALICE, 1))
        assert first.plan.script.source == "Alice said, good game Bob well played"
        assert first.voice.kind == "preset" and first.voice.speaker in presets
        assert first.keep_master is False
        again = await chat.request_for(item("again", ALICE, 2))
        assert again.plan.script.source == "again"  # the same author within a minute: not named again
        assert again.voice.id == first.voice.id  # the preset chosen from the user id is stable
        bob = await chat.request_for(item("hi", BOB, 3))
        assert bob.plan.script.source == "Bobby said, hi"  # the /narrate nick

        locked = await library.add(repo.NewVoice(GUILD, ALICE, "personal", "preset", "Mine", speaker=presets[0]))
        await library.lock(GUILD, ALICE, "Mine")
        assert (await chat.request_for(item("mine now", ALICE, 4))).voice.id == locked.id
        assert await chat.request_for(item("||only a spoiler||", ALICE, 5)) is None
    finally:
        await db.close()


@pytest.mark.asyncio
async def test_leaving_a_guild_deletes_its_chat_data(services: Services) -> None:
    config, rules = services.chat_config, services.dictionary
    await config.bind(GUILD, CHANNEL, None)
    await config.update(GUILD, skip_prefix="~")
    await config.set_nickname(GUILD, ALICE, "Ali")
    await rules.add(GUILD, None, "gg", "good game", False)
    await rules.add(GUILD + 1, None, "gg", "kept elsewhere", False)
    assert (await rules.for_member(GUILD, ALICE)).apply("gg").text == "good game"
    await config.forget_guild(GUILD)
    rules.forget_guild(GUILD)
    fresh = ChatConfig(services.db)
    assert await fresh.bound_channels(GUILD) == [] and await config.binding(GUILD, CHANNEL) is None
    assert (await fresh.settings(GUILD)).skip_prefix == "!" and (await config.settings(GUILD)).skip_prefix == "!"
    assert await fresh.nickname(GUILD, ALICE) is None
    assert (await rules.for_member(GUILD, ALICE)).apply("gg").text == "gg"
    assert [r.replacement for r in await rules.list(GUILD + 1, None)] == ["kept elsewhere"]

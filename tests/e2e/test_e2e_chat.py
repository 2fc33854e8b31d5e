"""Chat narration end to end: the real bot (tiny checkpoints on CPU) reads a text channel of the fake Discord aloud.

What a test can see: the fake's voice packets (what the channel heard), the answers to slash commands, and
`services.chat.history` (one record per message that rendered: author, voice, the words, announcement, timings).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.settings import Settings
from tests.e2e.conftest import NO_PERMISSIONS, Narrator, packets_since, sidecar, wait_for_master
from tests.fakediscord.harness import wait_until
from tests.fakediscord.messages import MESSAGE_CONTENT, SUPPRESS_NOTIFICATIONS, TYPE_MEMBER_JOIN
from tests.fakediscord.server import FakeDiscord

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio, pytest.mark.timeout(600)]
log = logging.getLogger(__name__)

GUILD = 3000  # the dev guild of `e2e_settings` (commands are synced there)
ALICE, BOB, CAROL = 2000, 2002, 2003  # Alice owns the guild (all permissions); all three sit in its voice channel
ROLE = GUILD + 50
_OPTION_TYPES = {str: 3, int: 4, bool: 5}


def sub(command: str, **options: object) -> list[dict]:
    """A subcommand with its options, as Discord sends them."""
    values = [{"name": k, "type": _OPTION_TYPES[type(v)], "value": v} for k, v in options.items()]
    return [{"name": command, "type": 1, "options": values}]


async def run(narrator: Narrator, user: int, group: str, command: str, *, permissions: str | None = None, **options):
    extra = {} if permissions is None else {"permissions": permissions}
    sent = await narrator.fake.command(GUILD, user, group, sub(command, **options), **extra)
    await wait_until(sent.answered, 30, f"/{group} {command}")
    return sent


def answer(sent) -> str:
    return sent.replies[-1].content


def history(narrator: Narrator) -> list[dict]:
    return list(narrator.bot.services.chat.history)


async def heard(narrator: Narrator, count: int, timeout: float = 120.0, *, hurry: bool = False) -> list[dict]:
    """Wait until `count` chat messages were heard; `hurry` skips each one once it has fully rendered (the tiny
    model talks for many seconds about anything, and what is tested here is the order and the words)."""
    services = narrator.bot.services
    deadline = time.monotonic() + timeout
    while len(history(narrator)) < count:
        assert time.monotonic() < deadline, f"timed out waiting for {count} chat messages, heard {history(narrator)}"
        now = services.chat.now_speaking(GUILD)
        if hurry and now is not None and now[1]:
            services.say.skip(GUILD)
        await asyncio.sleep(0.1)
    return history(narrator)


async def audible_after(narrator: Narrator, since: float, timeout: float = 60.0) -> float:
    """When the first audible packet after `since` arrived."""
    fake = narrator.fake
    await wait_until(lambda: any(p.audible for p in packets_since(fake, GUILD, since)), timeout, "audio")
    return next(p.at for p in packets_since(fake, GUILD, since) if p.audible)


async def start_bot(fake: FakeDiscord, settings: Settings) -> Narrator:
    guild = fake.add_guild(GUILD, [ALICE, BOB, CAROL])
    guild.names.update({ALICE: "Alice", BOB: "Bob", CAROL: "Carol"})
    guild.roles[ROLE] = "Moderators"
    runner = Narrator(fake, settings)
    await runner.start()
    return runner


@pytest_asyncio.fixture
async def chat(fake_discord: FakeDiscord, e2e_settings: Settings) -> AsyncIterator[Narrator]:
    runner = await start_bot(fake_discord, e2e_settings)
    try:
        yield runner
    finally:
        await runner.stop()


async def bind(narrator: Narrator) -> None:
    started = await run(narrator, ALICE, "narrate", "start")
    assert "Reading <#" in answer(started), answer(started)


# 1 ---------------------------------------------------------------------------------------------------------------------
async def test_three_authors_are_heard_in_order_in_their_locked_voices_and_names_are_throttled(chat: Narrator):
    fake = chat.fake
    for user, voice in ((ALICE, "ryan"), (BOB, "vivian"), (CAROL, "serena")):
        locked = await run(chat, user, "voice", "lock", name=voice)
        assert "Locked" in answer(locked), answer(locked)
    await bind(chat)
    posted_at = time.monotonic()
    posts = [(ALICE, "Hello, I am Alice."), (ALICE, "Still me."), (BOB, "Bob here."), (CAROL, "And Carol.")]
    posted = [await fake.post_message(GUILD, user, text) for user, text in posts]
    records = await heard(chat, 4)
    first = await audible_after(chat, posted_at)

    assert [r["message_id"] for r in records] == [p.id for p in posted]
    assert [r["voice"] for r in records] == ["ryan", "ryan", "vivian", "serena"]
    assert [r["author_id"] for r in records] == [user for user, _ in posts]
    assert [r["spoken"] for r in records] == [text for _, text in posts]
    # "alice said" once for her run of two messages; Bob and Carol are named because someone else spoke between
    assert [r["announced"] for r in records] == [True, False, True, True]
    # each render started only once the one before it had rendered (one at a time, in order)
    starts = [r["started_at"] for r in records]
    assert starts == sorted(starts)
    log.info("first audible packet %.2f s after the first message", first - posted_at)
    assert posted_at < first


# 2 ---------------------------------------------------------------------------------------------------------------------
RICH = (
    "**Look** at https://example.com/page?x=1 and `run it` then ```py\nprint(1)\n``` ||the ending|| <:blob_cat:123> "
    f"😂 thanks <@{BOB}> and <@&{ROLE}> in <#{GUILD + 1}> soooooo ~~old~~ __new__"
)
LONG = "First sentence is here. " + "This sentence keeps going on and on for a while. " * 40


async def test_cleanup_cases_and_ignored_messages_through_the_real_path(chat: Narrator) -> None:
    fake = chat.fake
    await bind(chat)
    changed = await run(chat, ALICE, "narrate", "settings", max_seconds=12, skip_prefix="~", announce_names=False)
    assert "Longest message: 12 s" in answer(changed), answer(changed)
    await fake.post_message(GUILD, 2999, "beep boop", bot=True)  # another bot (not a cached member)
    await fake.post_message(GUILD, BOB, "from a hook", webhook=True)
    await fake.post_message(GUILD, BOB, "quietly", flags=SUPPRESS_NOTIFICATIONS)
    await fake.post_message(GUILD, BOB, "~ not for reading")
    await fake.post_message(GUILD, BOB, "", type=TYPE_MEMBER_JOIN)
    rich = await fake.post_message(GUILD, BOB, RICH, mentions=[BOB], mention_roles=[ROLE],
                                   attachments=[("cat.png", "image/png", b"png"), ("notes.txt", None, b"x")])  # fmt: skip
    long = await fake.post_message(GUILD, CAROL, LONG)
    records = await heard(chat, 2, hurry=True)
    await asyncio.sleep(0.5)
    assert [r["message_id"] for r in history(chat)] == [rich.id, long.id]  # the ignored five never rendered

    spoken = records[0]["spoken"]
    log.info("rich message read as: %s", spoken)
    for expected in ("Look at a link and run it then a code block", "blob cat", "face with tears of joy",
                     "thanks Bob and Moderators in text", "sooo old new", "sent an image and a file"):  # fmt: skip
        assert expected in spoken, (expected, spoken)
    for hidden in ("ending", "http", "print", "*", "~", "_", "`", "<", "#"):
        assert hidden not in spoken, (hidden, spoken)
    assert records[1]["spoken"].startswith("First sentence is here.") and len(records[1]["spoken"]) < len(LONG) / 2
    assert records[1]["spoken"].endswith(".")  # cut at a sentence end
    assert not any(r["announced"] for r in records)


# 3 ---------------------------------------------------------------------------------------------------------------------
async def test_backlog_edits_deletions_skip_and_unbinding(chat: Narrator) -> None:
    fake, service = chat.fake, chat.bot.services.chat
    await bind(chat)
    before = time.monotonic()
    first = await fake.post_message(GUILD, ALICE, "A long first message. " + "It goes on and on. " * 3)
    await audible_after(chat, before)  # the first one is being spoken: it is never dropped
    posted = [await fake.post_message(GUILD, BOB, f"Number {k}.") for k in range(1, 7)]
    await wait_until(lambda: service.dropped >= 1, 10, "a message to be dropped")
    await asyncio.sleep(0.3)
    assert service.dropped == 1  # six waiting, five allowed: the oldest waiting went
    await fake.edit_message(posted[1], "Number two, edited.")  # rendered ahead or waiting: read as edited
    await fake.delete_message(posted[3])  # deleted before it was spoken

    skip = await fake.command(GUILD, BOB, "skip")
    await wait_until(skip.answered, 10, "/skip")
    assert answer(skip) == "Skipped."
    records = await heard(chat, 5, timeout=180, hurry=True)
    await asyncio.sleep(0.5)
    ids = [r["message_id"] for r in history(chat)]
    assert ids == [first.id, posted[1].id, posted[2].id, posted[4].id, posted[5].id], ids
    assert records[1]["spoken"] == "Number two, edited."

    refused = await run(chat, BOB, "narrate", "stop", permissions=NO_PERMISSIONS)
    assert "manage guild" in answer(refused).lower(), answer(refused)
    assert await chat.bot.services.chat_config.bound_channels(GUILD)
    stopped = await run(chat, ALICE, "narrate", "stop")
    assert "Stopped reading" in answer(stopped)
    assert not await chat.bot.services.chat_config.bound_channels(GUILD)
    await fake.post_message(GUILD, ALICE, "Nobody reads this.")
    await asyncio.sleep(0.5)
    assert len(history(chat)) == 5 and service.waiting(GUILD) == 0


# 4 ---------------------------------------------------------------------------------------------------------------------
HOSTILE = r"(\w+\s?)+$"  # exponential for a backtracking engine on words followed by punctuation
WORDS = " ".join(f"word{k}" for k in range(300)) + "!"


async def test_say_goes_first_the_dictionary_applies_to_say_and_chat_and_a_hostile_regex_is_harmless(chat: Narrator):
    fake = chat.fake
    await bind(chat)
    await run(chat, ALICE, "narrate", "settings", max_seconds=5)
    added = await run(chat, ALICE, "dictionary", "add", pattern="gg", replacement="good game")
    assert "Added" in answer(added), answer(added)
    hostile = await run(chat, ALICE, "dictionary", "add", pattern=HOSTILE, replacement="words", regex=True,
                        server=True)  # fmt: skip
    assert "Added" in answer(hostile), answer(hostile)
    denied = await run(chat, BOB, "dictionary", "add", pattern="x", replacement="y", server=True,
                       permissions=NO_PERMISSIONS)  # fmt: skip
    assert "Manage Server" in answer(denied)

    before = time.monotonic()
    long = await fake.post_message(GUILD, BOB, "A long message to keep the channel busy. On it goes.")
    await audible_after(chat, before)
    waiting = [await fake.post_message(GUILD, ALICE, "gg everyone."), await fake.post_message(GUILD, CAROL, WORDS)]
    say = await chat.say("[Calm] gg, well played.", user=ALICE)
    _, _, name = await wait_for_master(say)
    records = await heard(chat, 3, timeout=180, hurry=True)

    facts = sidecar(chat.settings, name)
    assert facts["script"] == "[Calm] good game, well played."
    assert facts["dictionary"]["original_script"] == "[Calm] gg, well played."
    assert [(f["pattern"], f["count"]) for f in facts["dictionary"]["fired"]] == [("gg", 1)]
    # the /say rendered before the chat messages that were waiting when it came
    (master_json,) = chat.settings.outputs_dir.rglob(f"{name.rsplit('.', 1)[0]}.json")
    say_done = time.monotonic() - (time.time() - master_json.stat().st_mtime)
    assert [r["message_id"] for r in records] == [long.id, *(m.id for m in waiting)]
    # (the message after the first may already have rendered ahead; the one after it waited for the /say)
    assert records[2]["started_at"] > say_done - 0.05, (say_done, records)

    assert records[1]["spoken"] == "good game everyone."
    assert records[1]["fired"][0]["pattern"] == "gg"
    assert records[2]["spoken"].startswith("word0") and records[2]["fired"] == []  # no match: the text ends in "!"
    # the hostile pattern cost nothing noticeable: the render began promptly once the message's turn came
    status = await run(chat, BOB, "narrate", "status")
    assert status.replies[-1].at - status.sent_at < 2.0


# 5 ---------------------------------------------------------------------------------------------------------------------
async def test_a_refused_message_content_intent_still_starts_and_narrate_says_how_to_enable_it(
    fake_discord: FakeDiscord, e2e_settings: Settings
) -> None:
    fake_discord.refuse_intents(MESSAGE_CONTENT)
    runner = await start_bot(fake_discord, e2e_settings)
    try:
        assert runner.bot.message_content_refused and not runner.bot.reads_messages
        assert fake_discord.identified_intents[0] & MESSAGE_CONTENT
        assert not fake_discord.intents & MESSAGE_CONTENT, fake_discord.identified_intents
        start = await run(runner, ALICE, "narrate", "start")
        assert "Message Content" in answer(start) and "developer portal" in answer(start)
        assert not await runner.bot.services.chat_config.bound_channels(GUILD)
        say = await runner.say("[Calm] Slash commands still work.", user=ALICE)
        await wait_for_master(say)
    finally:
        await runner.stop()

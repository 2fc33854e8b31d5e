"""Which messages are read, name announcements (throttled per author), composing the script, preset choice."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bot.chat.cleanup import CleanupOptions, clean_message
from bot.chat.message import (
    FLAG_SUPPRESS_NOTIFICATIONS,
    MESSAGE_TYPE_REPLY,
    Attachment,
    ChatMessage,
    MappingResolver,
)
from bot.chat.rules import (
    ANNOUNCE_WINDOW_S,
    AnnouncementThrottle,
    ReadRules,
    SkipReason,
    announcement,
    check_message,
    check_template,
    compose,
    preset_speaker,
)
from bot.narration.script import parse_script

NO_PREFIXES = ReadRules()
PRESETS = ("aiden", "dylan", "eric", "ono_anna", "ryan", "serena", "sohee", "uncle_fu", "vivian")


def verdict(content="hello", rules=NO_PREFIXES, **fields):
    return check_message(ChatMessage(content, author_id=7, **fields), rules)


def test_ordinary_messages_and_replies_are_read():
    assert verdict().read and verdict().reason is None and verdict().content == "hello"
    assert verdict(type=MESSAGE_TYPE_REPLY).read


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"author_is_bot": True}, SkipReason.BOT),
        ({"is_webhook": True}, SkipReason.WEBHOOK),
        ({"is_webhook": True, "author_is_bot": True}, SkipReason.WEBHOOK),
        ({"flags": FLAG_SUPPRESS_NOTIFICATIONS}, SkipReason.SILENT),
        ({"flags": FLAG_SUPPRESS_NOTIFICATIONS | 4}, SkipReason.SILENT),
        ({"type": 7}, SkipReason.SYSTEM),  # member joined
        ({"type": 6}, SkipReason.SYSTEM),  # pinned a message
        ({"type": 20}, SkipReason.SYSTEM),  # a slash command's response
    ],
)
def test_bots_webhooks_silent_and_system_messages_are_not_read(fields, reason):
    result = verdict(**fields)
    assert not result.read and result.reason is reason


def test_other_flags_do_not_silence_a_message():
    assert verdict(flags=1 << 2).read  # SUPPRESS_EMBEDS


def test_the_skip_prefix_skips_and_the_read_prefix_is_required_and_removed():
    skip = ReadRules(skip_prefix="!")
    assert verdict("!play song", skip).reason is SkipReason.SKIP_PREFIX
    assert verdict("  !play song", skip).reason is SkipReason.SKIP_PREFIX
    assert verdict("hello !", skip).read
    need = ReadRules(skip_prefix="-", required_prefix=";")
    assert verdict("hello", need).reason is SkipReason.NO_READ_PREFIX
    assert verdict("", need, attachments=(Attachment("a.png"),)).reason is SkipReason.NO_READ_PREFIX
    read = verdict(";hello there", need)
    assert read.read and read.content == "hello there"
    assert verdict("-;x", need).reason is SkipReason.SKIP_PREFIX


@pytest.mark.parametrize("bad", [{"skip_prefix": ""}, {"skip_prefix": " !"}, {"required_prefix": "x" * 11},
                                 {"skip_prefix": "!", "required_prefix": "!"}])  # fmt: skip
def test_bad_prefixes_are_refused(bad):
    with pytest.raises(ValueError, match="prefix"):
        ReadRules(**bad)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_author_is_announced_once_per_run_of_messages_within_the_window():
    clock = Clock()
    throttle = AnnouncementThrottle(clock=clock)
    assert throttle.should_announce(1, 10)
    clock.now += 30
    assert not throttle.should_announce(1, 10)
    clock.now += ANNOUNCE_WINDOW_S - 1  # 59 s after the previous message: still one run
    assert not throttle.should_announce(1, 10)
    clock.now += ANNOUNCE_WINDOW_S  # a minute of quiet
    assert throttle.should_announce(1, 10)


def test_someone_else_speaking_in_between_names_the_author_again():
    clock = Clock()
    throttle = AnnouncementThrottle(clock=clock)
    assert [throttle.should_announce(1, a) for a in (10, 10, 20, 10, 10)] == [True, False, True, True, False]


def test_guilds_are_throttled_separately_and_forget_starts_afresh():
    throttle = AnnouncementThrottle(clock=Clock())
    assert throttle.should_announce(1, 10) and throttle.should_announce(2, 10)
    assert not throttle.should_announce(1, 10)
    throttle.forget(1)
    assert throttle.should_announce(1, 10)


def test_the_throttle_memory_is_bounded():
    throttle = AnnouncementThrottle(clock=Clock(), max_guilds=3)
    for guild in range(10):
        throttle.should_announce(guild, 10)
    assert len(throttle._last) == 3
    assert not throttle.should_announce(9, 10) and throttle.should_announce(0, 10)


def test_templates_and_announcements():
    assert check_template("  {name}   says ") == "{name} says"
    for bad, why in (("said", "must contain"), ("{name}" + "x" * 80, "limit is")):
        with pytest.raises(ValueError, match=why):
            check_template(bad)
    assert announcement("Alice 🎸") == "Alice guitar said"
    assert announcement("") == "someone said"
    assert announcement("abcdefghij" * 10, "{name} dit") == ("abcdefghij" * 4)[:32] + " dit"


def test_compose_puts_the_announcement_first_and_keeps_the_script_safe():
    names = MappingResolver()
    honour = CleanupOptions(honour_tags=True)
    hello = clean_message(ChatMessage("[Excited] hello"), names, honour)
    assert compose(hello, None) == "[Excited] hello"
    text = compose(hello, "[mod] alice")
    assert text == "\\[mod\\] alice said, [Excited] hello"
    speeches = parse_script(text).speeches
    assert [(s.text, s.emotion) for s in speeches] == [("[mod] alice said,", None), ("hello", "excited")]
    image = clean_message(ChatMessage("", attachments=(Attachment("a.png", "image/png"),)), names, honour)
    assert compose(image, "alice") == "alice sent an image"


def test_preset_speaker_is_deterministic_and_spreads_members():
    chosen = Counter(preset_speaker(uid, PRESETS) for uid in range(10**17, 10**17 + 900))
    assert set(chosen) == set(PRESETS)
    assert max(chosen.values()) < 2 * 900 / len(PRESETS)
    assert preset_speaker(123, PRESETS) == preset_speaker(123, tuple(reversed(PRESETS)))


def test_adding_a_preset_moves_only_members_who_now_get_it():
    before = {uid: preset_speaker(uid, PRESETS) for uid in range(1000)}
    after = {uid: preset_speaker(uid, (*PRESETS, "newcomer")) for uid in range(1000)}
    moved = [uid for uid in before if before[uid] != after[uid]]
    assert all(after[uid] == "newcomer" for uid in moved) and 40 < len(moved) < 200


def test_preset_speaker_is_the_same_in_another_process():
    ids = [1, 42, 10**18, 273645018263548172]
    code = "import sys; from bot.chat.rules import preset_speaker; " \
           f"print(','.join(preset_speaker(u, {PRESETS!r}) for u in {ids!r}))"  # fmt: skip
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=root)
    assert out.stdout.strip().split(",") == [preset_speaker(u, PRESETS) for u in ids]


def test_no_presets_is_an_error():
    with pytest.raises(ValueError, match="no preset"):
        preset_speaker(1, ())

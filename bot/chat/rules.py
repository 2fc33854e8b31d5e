"""Which chat messages are read, who is named before them, and which preset speaks for a member without a voice.

- Not read: messages from bots and webhooks, system messages (joins, pins, boosts: any type but default and reply),
  `@silent` messages (flag SUPPRESS_NOTIFICATIONS), messages starting with the guild's skip prefix, and, when the
  guild requires a read prefix, messages without it (the prefix itself is not read).
- "alice said" comes before a message unless the previous message read in that guild was alice's, less than
  `ANNOUNCE_WINDOW_S` ago (a member's run of messages is named once; someone else speaking in between, or a minute of
  quiet, names her again). Decide at the moment a message is spoken, not when it is queued (queued ones may be dropped).
- A member with no voice of their own (and no guild default) gets a preset speaker chosen from their user id by
  rendezvous hashing (BLAKE2b, identical in every process and run): different members mostly sound different, and
  adding a preset to the list moves only the members who now map to it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from cachetools import LRUCache

from bot.chat.cleanup import CleanedMessage
from bot.chat.markup import escape
from bot.chat.message import (
    FLAG_SUPPRESS_NOTIFICATIONS,
    MESSAGE_TYPE_DEFAULT,
    MESSAGE_TYPE_REPLY,
    ChatMessage,
)
from bot.chat.spoken import speakable_name

ANNOUNCE_WINDOW_S = 60.0
DEFAULT_TEMPLATE = "{name} said"
NAME_FIELD = "{name}"
MAX_TEMPLATE_CHARS = 80
MAX_PREFIX_CHARS = 10
MAX_TRACKED_GUILDS = 100_000  # the throttle's memory: one (author, time) per guild, oldest forgotten first
UNKNOWN_NAME = "someone"


class SkipReason(str, Enum):
    BOT = "sent by a bot"
    WEBHOOK = "sent by a webhook"
    SYSTEM = "a system message"
    SILENT = "sent with @silent"
    SKIP_PREFIX = "starts with the skip prefix"
    NO_READ_PREFIX = "lacks the required read prefix"


@dataclass(frozen=True)
class ReadRules:
    skip_prefix: str | None = None  # messages starting with it are not read
    required_prefix: str | None = None  # when set, only messages starting with it are read (without it)

    def __post_init__(self) -> None:
        for what, prefix in (("skip prefix", self.skip_prefix), ("read prefix", self.required_prefix)):
            if prefix is not None and not (0 < len(prefix) <= MAX_PREFIX_CHARS and prefix == prefix.strip()):
                raise ValueError(f"the {what} must be 1 to {MAX_PREFIX_CHARS} characters with no spaces around it")
        if self.skip_prefix is not None and self.skip_prefix == self.required_prefix:
            raise ValueError("the skip prefix and the read prefix must differ")


@dataclass(frozen=True)
class Verdict:
    read: bool
    reason: SkipReason | None  # why not, when `read` is False
    content: str  # the content to clean (the read prefix removed)


def check_message(message: ChatMessage, rules: ReadRules = ReadRules()) -> Verdict:
    """Whether `message` is read, and the content to read."""
    reason = _skip_reason(message)
    if reason is not None:
        return Verdict(False, reason, message.content)
    content = message.content.lstrip()
    if rules.skip_prefix is not None and content.startswith(rules.skip_prefix):
        return Verdict(False, SkipReason.SKIP_PREFIX, message.content)
    if rules.required_prefix is not None:
        if not content.startswith(rules.required_prefix):
            return Verdict(False, SkipReason.NO_READ_PREFIX, message.content)
        content = content[len(rules.required_prefix) :]
    return Verdict(True, None, content)


def _skip_reason(message: ChatMessage) -> SkipReason | None:
    if message.is_webhook:
        return SkipReason.WEBHOOK
    if message.author_is_bot:
        return SkipReason.BOT
    if message.type not in (MESSAGE_TYPE_DEFAULT, MESSAGE_TYPE_REPLY):
        return SkipReason.SYSTEM
    if message.flags & FLAG_SUPPRESS_NOTIFICATIONS:
        return SkipReason.SILENT
    return None


class AnnouncementThrottle:
    """Per guild: the last author read and when; `should_announce` decides and records in one step."""

    def __init__(
        self,
        window_s: float = ANNOUNCE_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        max_guilds: int = MAX_TRACKED_GUILDS,
    ) -> None:
        self.window_s, self.clock = window_s, clock
        self._last: LRUCache[int, tuple[int, float]] = LRUCache(max_guilds)

    def should_announce(self, guild_id: int, author_id: int) -> bool:
        """True when the author's name should be said before this message (call once, as it is spoken)."""
        now = self.clock()
        last = self._last.get(guild_id)
        announce = last is None or last[0] != author_id or now - last[1] >= self.window_s
        self._last[guild_id] = (author_id, now)
        return announce

    def forget(self, guild_id: int) -> None:
        """Start afresh in a guild (the bot left voice: the next message names its author again)."""
        self._last.pop(guild_id, None)


def check_template(template: str) -> str:
    """The announcement template as stored; raises ValueError with a sentence for a bad one."""
    template = " ".join(template.split())
    if NAME_FIELD not in template:
        raise ValueError(f"the announcement must contain {NAME_FIELD}, e.g. `{DEFAULT_TEMPLATE}`")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise ValueError(f"the announcement is {len(template)} characters long; the limit is {MAX_TEMPLATE_CHARS}")
    return template


def announcement(name: str, template: str = DEFAULT_TEMPLATE) -> str:
    """Plain text of the announcement: "alice said" (the name made speakable; brackets are not escaped here)."""
    return template.replace(NAME_FIELD, speakable_name(name) or UNKNOWN_NAME)


def compose(cleaned: CleanedMessage, name: str | None, template: str = DEFAULT_TEMPLATE) -> str:
    """Script text to render: the message, preceded by the announcement when `name` is given.

    A message of attachments alone reads "alice sent an image" (the template's verb would not fit).
    """
    if name is None:
        return cleaned.text
    if not cleaned.has_words:
        return f"{escape(speakable_name(name) or UNKNOWN_NAME)} {cleaned.text}"
    return f"{escape(announcement(name, template))}, {cleaned.text}"


def preset_speaker(user_id: int, presets: Sequence[str]) -> str:
    """The preset that speaks for `user_id`: the same in every process, spread evenly over `presets`."""
    if not presets:
        raise ValueError("there are no preset speakers to choose from")
    return max(presets, key=lambda preset: (_weight(user_id, preset), preset))


def _weight(user_id: int, preset: str) -> bytes:
    return hashlib.blake2b(f"{user_id}\x00{preset}".encode(), digest_size=8).digest()

"""Plain values for one chat message and for naming what it mentions: what `bot/chat` reads instead of Discord objects.

The Discord glue turns a `discord.Message` into a `ChatMessage` (author id and name, `author.bot`, `webhook_id is not
None`, `flags.value`, `type.value`, content, attachments as filename + content type) and gives a `Resolver` that names
mentioned users, roles and channels from the guild's cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

# Discord message types that carry something a member typed (everything else is a system message: joins, pins, boosts).
MESSAGE_TYPE_DEFAULT = 0
MESSAGE_TYPE_REPLY = 19
# Message flag of `@silent` messages (SUPPRESS_NOTIFICATIONS).
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str | None = None  # as Discord reports it ("image/png"); None when it did not say


@dataclass(frozen=True)
class ChatMessage:
    content: str
    author_id: int = 0
    author_name: str = ""  # the name to announce ("alice said"): the member's /narrate nick, else display name
    author_is_bot: bool = False
    is_webhook: bool = False
    flags: int = 0
    type: int = MESSAGE_TYPE_DEFAULT
    attachments: tuple[Attachment, ...] = ()
    id: int = 0
    guild_id: int = 0
    channel_id: int = 0


class Resolver(Protocol):
    """Names for mentions; None when the id is unknown (the cleanup then says "someone", "a role", "a channel")."""

    def user(self, user_id: int) -> str | None: ...

    def role(self, role_id: int) -> str | None: ...

    def channel(self, channel_id: int) -> str | None: ...


@dataclass(frozen=True)
class MappingResolver:
    """A `Resolver` over plain mappings (id -> display name)."""

    users: Mapping[int, str] = field(default_factory=dict)
    roles: Mapping[int, str] = field(default_factory=dict)
    channels: Mapping[int, str] = field(default_factory=dict)

    def user(self, user_id: int) -> str | None:
        return self.users.get(user_id)

    def role(self, role_id: int) -> str | None:
        return self.roles.get(role_id)

    def channel(self, channel_id: int) -> str | None:
        return self.channels.get(channel_id)


NO_NAMES = MappingResolver()

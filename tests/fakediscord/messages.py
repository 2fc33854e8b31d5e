"""Chat on the fake: members post, edit and delete messages in a guild's text channel (MESSAGE_CREATE / _UPDATE /
_DELETE to the connected bot), and the gateway can refuse privileged intents the way Discord does.

Delivery follows Discord's rules for the intents the client IDENTIFYed with: without GUILD_MESSAGES it gets no guild
message events at all; without MESSAGE_CONTENT it gets them with content, attachments and embeds blanked (unless the
message mentions the bot). `refuse_intents(MESSAGE_CONTENT)` makes an IDENTIFY asking for it close with 4014
("disallowed intents"), as for a bot whose privileged intent is not enabled in the developer portal.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.fakediscord import payloads

if TYPE_CHECKING:
    from tests.fakediscord.payloads import FakeGuild

GUILD_MESSAGES = 1 << 9
MESSAGE_CONTENT = 1 << 15
CLOSE_DISALLOWED_INTENTS = 4014
SUPPRESS_NOTIFICATIONS = 1 << 12  # the `@silent` flag
TYPE_DEFAULT, TYPE_REPLY, TYPE_MEMBER_JOIN = 0, 19, 7


@dataclass
class PostedMessage:
    """A message a member (or bot, or webhook) sent, as the fake holds it; `payload` is the full message object."""

    id: int
    guild_id: int
    channel_id: int
    payload: dict[str, Any]
    delivered: list[str] = field(default_factory=list)  # the events the bot was sent for it, in order


class ChatMixin:
    """Mixed into `FakeDiscord` (uses its `app_id`, `dispatch`, `guilds`, `cdn`, `url`, `_ids` and `_gateway`)."""

    app_id: int
    guilds: dict[int, FakeGuild]
    cdn: dict[str, bytes]

    def _init_chat(self) -> None:
        self.messages: dict[int, PostedMessage] = {}
        self.refused_intents = 0
        self.identified_intents: list[int] = []  # the intents of every IDENTIFY, refused ones too
        self._webhooks = itertools.count(900_000)

    def refuse_intents(self, mask: int = MESSAGE_CONTENT) -> None:
        """From now on an IDENTIFY asking for any intent in `mask` is closed with 4014."""
        self.refused_intents = mask

    @property
    def intents(self) -> int:
        """The intents of the session the bot holds now (0 before any IDENTIFY)."""
        return self.identified_intents[-1] if self.identified_intents else 0

    async def _check_identify(self, data: dict) -> bool:
        """Record IDENTIFY's intents; True (and the gateway closed with 4014) when they ask for a refused one."""
        intents = int(data.get("intents") or 0)
        self.identified_intents.append(intents)
        if intents & self.refused_intents:
            await self._gateway.close(code=CLOSE_DISALLOWED_INTENTS, message=b"Disallowed intent(s).")
            return True
        return False

    async def post_message(self, guild_id: int, author_id: int, content: str = "", *, bot: bool = False,
                           webhook: bool = False, flags: int = 0, type: int = TYPE_DEFAULT,
                           attachments: list[tuple[str, str | None, bytes]] = (), mentions: list[int] = (),
                           mention_roles: list[int] = (), channel_id: int | None = None) -> PostedMessage:  # fmt: skip
        """MESSAGE_CREATE for a message by `author_id` in `guild_id`'s text channel. `attachments` are (filename,
        content type or None, bytes), served by the fake; `mentions` are user ids (they also appear in `content`
        only if written there, as `<@id>`); `webhook` sends it as a webhook with that author."""
        guild = self.guilds[guild_id]
        mid = next(self._ids)
        channel = guild.text_channel if channel_id is None else channel_id
        files = [self._serve_attachment(name, kind, data) for name, kind, data in attachments]
        payload = {
            "id": str(mid), "channel_id": str(channel), "guild_id": str(guild_id),
            "author": payloads.user(author_id, bot=bot or webhook, name=guild.names.get(author_id)),
            "content": content, "timestamp": payloads.now_iso(), "edited_timestamp": None, "tts": False,
            "mention_everyone": "@everyone" in content, "mentions": [self._mentioned(guild, uid) for uid in mentions],
            "mention_roles": [str(r) for r in mention_roles], "attachments": files, "embeds": [], "pinned": False,
            "type": type, "flags": flags, "components": [],
        }  # fmt: skip
        if webhook:
            payload["webhook_id"] = str(next(self._webhooks))
        else:
            payload["member"] = {k: v for k, v in payloads.member(author_id).items() if k != "user"}
        posted = PostedMessage(mid, guild_id, channel, payload)
        self.messages[mid] = posted
        await self._deliver(posted, "MESSAGE_CREATE", payload)
        return posted

    async def edit_message(self, message: PostedMessage, content: str) -> None:
        """MESSAGE_UPDATE with the full edited message (what discord.py 2.7 builds `after` from)."""
        message.payload = message.payload | {"content": content, "edited_timestamp": payloads.now_iso()}
        await self._deliver(message, "MESSAGE_UPDATE", message.payload)

    async def delete_message(self, message: PostedMessage) -> None:
        self.messages.pop(message.id, None)
        data = {"id": str(message.id), "channel_id": str(message.channel_id), "guild_id": str(message.guild_id)}
        await self._deliver(message, "MESSAGE_DELETE", data)

    async def _deliver(self, message: PostedMessage, event: str, data: dict) -> None:
        if self._gateway is None or self._gateway.closed or not self.intents & GUILD_MESSAGES:
            return  # Discord sends guild message events only to a session with GUILD_MESSAGES
        if event != "MESSAGE_DELETE" and not self.intents & MESSAGE_CONTENT and not self._mentions_bot(data):
            data = data | {"content": "", "attachments": [], "embeds": [], "components": []}
        message.delivered.append(event)
        await self.dispatch(event, data)

    def _mentions_bot(self, data: dict) -> bool:
        return any(m["id"] == str(self.app_id) for m in data.get("mentions", []))

    def _mentioned(self, guild: FakeGuild, uid: int) -> dict:
        mentioned = payloads.user(uid, name=guild.names.get(uid))
        mentioned["member"] = {k: v for k, v in payloads.member(uid).items() if k != "user"}
        return mentioned

    def _serve_attachment(self, filename: str, content_type: str | None, data: bytes) -> dict:
        aid = next(self._ids)
        self.cdn[f"{aid}/{filename}"] = data
        return payloads.attachment(aid, filename, len(data), self.url(f"{aid}/{filename}"), content_type)

"""JSON builders for the Discord objects the fake sends (API v10 field names; only what discord.py 2.7.1 reads)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import discord

ALL_PERMISSIONS = str(discord.Permissions.all().value)
# @everyone in a fresh server: see, talk and use commands; no management permissions
EVERYONE_PERMISSIONS = str(discord.Permissions(view_channel=True, send_messages=True, read_message_history=True,
                                               attach_files=True, embed_links=True, connect=True, speak=True,
                                               use_application_commands=True).value)  # fmt: skip
NO_PERMISSIONS = "0"
ATTACHMENT_LIMIT = 10 * 1024 * 1024  # Discord's default upload limit since 2025 (bytes)


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def user(uid: int, *, bot: bool = False, name: str | None = None) -> dict[str, Any]:
    """`name` is the display name (`global_name`); without it discord.py shows the username `user<id>`."""
    return {"id": str(uid), "username": f"user{uid}", "discriminator": "0", "global_name": name, "avatar": None,
            "bot": bot}  # fmt: skip


def member(uid: int, *, bot: bool = False, name: str | None = None) -> dict[str, Any]:
    return {"user": user(uid, bot=bot, name=name), "roles": [], "joined_at": now_iso(), "deaf": False, "mute": False,
            "flags": 0}  # fmt: skip


def voice_state(guild_id: int, uid: int, channel_id: int | None, session_id: str, *, bot: bool = False) -> dict:
    return {"guild_id": str(guild_id), "channel_id": None if channel_id is None else str(channel_id),
            "user_id": str(uid), "session_id": session_id, "deaf": False, "mute": False, "self_deaf": bot,
            "self_mute": False, "suppress": False, "member": member(uid, bot=bot)}  # fmt: skip


def message(mid: int, channel_id: int, author_id: int, body: dict[str, Any], attachments: list[dict]) -> dict:
    """A message object echoing what was sent (content, flags, attachments the fake now serves)."""
    return {"id": str(mid), "channel_id": str(channel_id), "author": user(author_id, bot=True),
            "content": body.get("content") or "", "timestamp": now_iso(), "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": attachments,
            "embeds": body.get("embeds") or [], "pinned": False, "type": 20 if channel_id else 0,
            "flags": int(body.get("flags") or 0), "components": []}  # fmt: skip


def attachment(aid: int, filename: str, size: int, url: str, content_type: str | None = None) -> dict[str, Any]:
    found = {"id": str(aid), "filename": filename, "size": size, "url": url, "proxy_url": url}
    return found | ({"content_type": content_type} if content_type else {})


def role(rid: int, name: str, permissions: str = "0", position: int = 1) -> dict[str, Any]:
    return {"id": str(rid), "name": name, "permissions": permissions, "position": position, "color": 0,
            "hoist": False, "managed": False, "mentionable": True}  # fmt: skip


@dataclass
class FakeGuild:
    """One guild: a text channel (id + 1), a voice channel (id + 2), members and who sits in which voice channel."""

    id: int
    owner_id: int
    members: list[int]
    voice: dict[int, int] = field(default_factory=dict)  # user id -> voice channel id
    names: dict[int, str] = field(default_factory=dict)  # user id -> display name (default: username user<id>)
    roles: dict[int, str] = field(default_factory=dict)  # role id -> name, besides @everyone

    @property
    def text_channel(self) -> int:
        return self.id + 1

    @property
    def voice_channel(self) -> int:
        return self.id + 2

    def to_dict(self, app_id: int) -> dict[str, Any]:
        everyone = role(self.id, "@everyone", EVERYONE_PERMISSIONS, 0) | {"mentionable": False}
        channels = [
            {"id": str(self.text_channel), "type": 0, "name": "text", "position": 0, "permission_overwrites": []},
            {"id": str(self.voice_channel), "type": 2, "name": "voice", "position": 1, "permission_overwrites": [],
             "bitrate": 64000, "user_limit": 0},
        ]  # fmt: skip
        states = [voice_state(self.id, uid, ch, f"s{uid}") for uid, ch in self.voice.items()]
        roles = [everyone] + [role(rid, name) for rid, name in self.roles.items()]
        members = [member(u, name=self.names.get(u)) for u in self.members] + [member(app_id, bot=True)]
        return {"id": str(self.id), "name": f"guild{self.id}", "owner_id": str(self.owner_id), "roles": roles,
                "channels": channels, "members": members,
                "voice_states": states, "member_count": len(self.members) + 1, "unavailable": False, "threads": [],
                "stage_instances": [], "guild_scheduled_events": [], "emojis": [], "stickers": [], "features": [],
                "premium_tier": 0}  # fmt: skip


def interaction(iid: int, app_id: int, kind: int, guild: FakeGuild, uid: int, data: dict, permissions: str) -> dict:
    """INTERACTION_CREATE for a slash command (kind 2) or an autocomplete (kind 4) in `guild`'s text channel."""
    return {"id": str(iid), "application_id": str(app_id), "type": kind, "token": f"itok{iid}", "version": 1,
            "guild_id": str(guild.id), "channel_id": str(guild.text_channel),
            "channel": {"id": str(guild.text_channel), "type": 0, "guild_id": str(guild.id)},
            "member": member(uid) | {"permissions": permissions}, "attachment_size_limit": ATTACHMENT_LIMIT,
            "app_permissions": ALL_PERMISSIONS, "locale": "en-US", "guild_locale": "en-US", "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id)}, "context": 0, "data": data}  # fmt: skip

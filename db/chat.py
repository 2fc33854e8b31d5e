"""Chat narration storage: per-guild chat settings, bound text channels, spoken nicknames, pronunciation rules.

Every function takes the caller's session (the caller owns the transaction) and returns frozen dataclasses.
Caps on dictionary rules are the caller's to enforce; `count_rules` gives the numbers. Settings are checked here
(`InvalidSetting`, one sentence) so no caller can store a value the reader cannot use.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.errors import InvalidSetting
from db.models import ChatChannelRow, ChatSettingsRow, DictionaryRuleRow, NicknameRow, utcnow
from db.names import voice_name_key

MESSAGE_SECONDS_RANGE = (5, 120)
MAX_PREFIX_CHARS = 16
MAX_TEMPLATE_CHARS = 100
MAX_NICKNAME_CHARS = 64
MAX_RULE_CHARS = 200


@dataclass(frozen=True)
class ChatSettings:
    guild_id: int
    autojoin: bool = False  # join when someone in voice writes in a bound channel
    require_author_in_voice: bool = True  # read only authors who are in the bot's voice channel
    skip_prefix: str = "!"  # messages starting with it are not read
    read_prefix: str | None = None  # if set, only messages starting with it are read
    announce_names: bool = True
    name_template: str = "{name} said"
    max_message_seconds: int = 30
    emotion_tags_in_chat: bool = True


@dataclass(frozen=True)
class BoundChannel:
    guild_id: int
    text_channel_id: int
    voice_channel_id: int | None
    bound_at: datetime


@dataclass(frozen=True)
class DictionaryRule:
    id: int
    guild_id: int
    user_id: int | None  # None: a guild rule
    pattern: str
    replacement: str
    is_regex: bool
    created_at: datetime


SETTING_NAMES = tuple(f.name for f in fields(ChatSettings) if f.name != "guild_id")


def check_chat_setting(name: str, value: object) -> None:
    """`InvalidSetting` naming the problem if `value` cannot be stored as chat setting `name`."""
    if name not in SETTING_NAMES:
        raise InvalidSetting(f"unknown chat setting {name!r}; known: {', '.join(SETTING_NAMES)}")
    if name == "max_message_seconds":
        low, high = MESSAGE_SECONDS_RANGE
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidSetting(f"the longest message must be {low} to {high} seconds, not {value!r}")
    elif name in ("skip_prefix", "read_prefix"):
        if value is None and name == "read_prefix":
            return
        if not isinstance(value, str) or not 1 <= len(value) <= MAX_PREFIX_CHARS or value != value.strip():
            raise InvalidSetting(f"{name} must be 1 to {MAX_PREFIX_CHARS} characters without spaces around them")
    elif name == "name_template":
        if not isinstance(value, str) or "{name}" not in value or len(value) > MAX_TEMPLATE_CHARS:
            raise InvalidSetting(
                f"the name template must contain {{name}} and be at most {MAX_TEMPLATE_CHARS} characters"
            )
        try:
            value.format(name="x")
        except (KeyError, IndexError, ValueError):
            raise InvalidSetting("the name template may contain only {name} in braces") from None
    elif not isinstance(value, bool):
        raise InvalidSetting(f"{name} is on or off (True or False), not {value!r}")


# ---- settings -------------------------------------------------------------------------------------------------------


async def get_chat_settings(session: AsyncSession, guild_id: int) -> ChatSettings:
    row = await session.get(ChatSettingsRow, guild_id)
    if row is None:
        return ChatSettings(guild_id)
    return ChatSettings(guild_id, **{name: getattr(row, name) for name in SETTING_NAMES})


async def update_chat_settings(session: AsyncSession, guild_id: int, **values: object) -> ChatSettings:
    """Change some settings (each checked: `InvalidSetting`, nothing stored); returns the new settings."""
    for name, value in values.items():
        check_chat_setting(name, value)
    row = await session.get(ChatSettingsRow, guild_id)
    if row is None:
        defaults = ChatSettings(guild_id)
        row = ChatSettingsRow(guild_id=guild_id, **{name: getattr(defaults, name) for name in SETTING_NAMES})
        session.add(row)
    for name, value in values.items():
        setattr(row, name, value)
    await session.flush()
    return await get_chat_settings(session, guild_id)


# ---- bound channels -------------------------------------------------------------------------------------------------


def _bound(row: ChatChannelRow) -> BoundChannel:
    return BoundChannel(row.guild_id, row.text_channel_id, row.voice_channel_id, row.bound_at)


async def bind_channel(
    session: AsyncSession, guild_id: int, text_channel_id: int, voice_channel_id: int | None = None
) -> BoundChannel:
    """Read `text_channel_id` aloud (again binding it only changes its voice channel)."""
    row = await session.get(ChatChannelRow, (guild_id, text_channel_id))
    if row is None:
        row = ChatChannelRow(
            guild_id=guild_id, text_channel_id=text_channel_id, voice_channel_id=voice_channel_id, bound_at=utcnow()
        )
        session.add(row)
    else:
        row.voice_channel_id = voice_channel_id
    await session.flush()
    return _bound(row)


async def unbind_channel(session: AsyncSession, guild_id: int, text_channel_id: int) -> bool:
    result = await session.execute(
        delete(ChatChannelRow).where(
            ChatChannelRow.guild_id == guild_id, ChatChannelRow.text_channel_id == text_channel_id
        )
    )
    return result.rowcount > 0


async def bound_channel(session: AsyncSession, guild_id: int, text_channel_id: int) -> BoundChannel | None:
    """The binding of one channel (per message: is it read?), or None."""
    row = await session.get(ChatChannelRow, (guild_id, text_channel_id))
    return _bound(row) if row else None


async def bound_channels(session: AsyncSession, guild_id: int) -> list[BoundChannel]:
    rows = await session.scalars(
        select(ChatChannelRow).where(ChatChannelRow.guild_id == guild_id).order_by(ChatChannelRow.bound_at)
    )
    return [_bound(r) for r in rows]


async def all_bound_channels(session: AsyncSession) -> list[BoundChannel]:
    """Every binding of every guild (to warm a cache at start)."""
    rows = await session.scalars(select(ChatChannelRow).order_by(ChatChannelRow.guild_id, ChatChannelRow.bound_at))
    return [_bound(r) for r in rows]


# ---- nicknames ------------------------------------------------------------------------------------------------------


async def set_nickname(session: AsyncSession, guild_id: int, user_id: int, nickname: str) -> str:
    """The name said for this member in this guild; returns it as stored (trimmed)."""
    nickname = " ".join(nickname.split())
    if not 1 <= len(nickname) <= MAX_NICKNAME_CHARS:
        raise InvalidSetting(f"a nickname must be 1 to {MAX_NICKNAME_CHARS} characters")
    row = await session.get(NicknameRow, (guild_id, user_id))
    if row is None:
        session.add(NicknameRow(guild_id=guild_id, user_id=user_id, nickname=nickname, updated_at=utcnow()))
    else:
        row.nickname, row.updated_at = nickname, utcnow()
    await session.flush()
    return nickname


async def get_nickname(session: AsyncSession, guild_id: int, user_id: int) -> str | None:
    row = await session.get(NicknameRow, (guild_id, user_id))
    return row.nickname if row else None


async def clear_nickname(session: AsyncSession, guild_id: int, user_id: int) -> bool:
    result = await session.execute(
        delete(NicknameRow).where(NicknameRow.guild_id == guild_id, NicknameRow.user_id == user_id)
    )
    return result.rowcount > 0


# ---- pronunciation dictionary ---------------------------------------------------------------------------------------


def _rule(row: DictionaryRuleRow) -> DictionaryRule:
    return DictionaryRule(row.id, row.guild_id, row.user_id, row.pattern, row.replacement, row.is_regex, row.created_at)


def _owner(guild_id: int, user_id: int | None):
    owner = DictionaryRuleRow.user_id.is_(None) if user_id is None else DictionaryRuleRow.user_id == user_id
    return (DictionaryRuleRow.guild_id == guild_id) & owner


async def add_rule(
    session: AsyncSession,
    guild_id: int,
    user_id: int | None,
    pattern: str,
    replacement: str,
    *,
    is_regex: bool = False,
) -> DictionaryRule:
    """Add a rule (`user_id` None: the guild's). The same pattern of the same owner (a plain one compared without
    case, as it matches; a regex exactly) is replaced, so adding it again changes its replacement. Pattern syntax
    (a regex that compiles in the linear-time engine) is the caller's to check; lengths are checked here."""
    if not 1 <= len(pattern) <= MAX_RULE_CHARS or len(replacement) > MAX_RULE_CHARS:
        raise InvalidSetting(f"a rule's pattern must be 1 to {MAX_RULE_CHARS} characters, its replacement at most so")
    same = await _same_pattern(session, guild_id, user_id, pattern, is_regex=is_regex)
    row = same[0] if same else None
    if row is None:
        row = DictionaryRuleRow(guild_id=guild_id, user_id=user_id, pattern=pattern, is_regex=is_regex)
        session.add(row)
    row.pattern, row.replacement, row.created_at = pattern, replacement, utcnow()
    await session.flush()
    return _rule(row)


def _plain_key(pattern: str) -> str:
    return voice_name_key(pattern)  # NFKC + casefold, spaces squashed: how a plain rule's pattern matches


async def _same_pattern(
    session: AsyncSession, guild_id: int, user_id: int | None, pattern: str, *, is_regex: bool | None
) -> list[DictionaryRuleRow]:
    """This owner's rules with this pattern: regex ones exactly, plain ones without case (compared here in Python,
    SQLite's lower() folds only ASCII; an owner has at most a few hundred rules). `is_regex` None: either kind."""
    where = [_owner(guild_id, user_id)]
    if is_regex is not None:
        where.append(DictionaryRuleRow.is_regex == is_regex)
    rows = await session.scalars(select(DictionaryRuleRow).where(*where).order_by(DictionaryRuleRow.id))
    key = _plain_key(pattern)
    return [r for r in rows if (r.pattern == pattern if r.is_regex else _plain_key(r.pattern) == key)]


async def remove_rule(session: AsyncSession, guild_id: int, user_id: int | None, pattern: str) -> int:
    """Remove this owner's rules with this pattern (a regex one exactly, a plain one without case); returns how
    many went."""
    ids = [r.id for r in await _same_pattern(session, guild_id, user_id, pattern, is_regex=None)]
    if not ids:
        return 0
    result = await session.execute(delete(DictionaryRuleRow).where(DictionaryRuleRow.id.in_(ids)))
    return result.rowcount


async def remove_rule_by_id(session: AsyncSession, guild_id: int, user_id: int | None, rule_id: int) -> bool:
    result = await session.execute(
        delete(DictionaryRuleRow).where(_owner(guild_id, user_id), DictionaryRuleRow.id == rule_id)
    )
    return result.rowcount > 0


async def list_rules(session: AsyncSession, guild_id: int, user_id: int | None) -> list[DictionaryRule]:
    """One owner's rules (`user_id` None: the guild's), in the order they were added."""
    rows = await session.scalars(
        select(DictionaryRuleRow).where(_owner(guild_id, user_id)).order_by(DictionaryRuleRow.id)
    )
    return [_rule(r) for r in rows]


async def rules_for(session: AsyncSession, guild_id: int, user_id: int) -> list[DictionaryRule]:
    """The rules that apply to a member's text: their own first (they win), then the guild's."""
    return await list_rules(session, guild_id, user_id) + await list_rules(session, guild_id, None)


async def count_rules(session: AsyncSession, guild_id: int, user_id: int | None) -> int:
    """How many rules this owner has (`user_id` None: the guild's own rules, not its members'), for the caps."""
    return (
        await session.scalar(select(func.count()).select_from(DictionaryRuleRow).where(_owner(guild_id, user_id))) or 0
    )


async def clear_rules(session: AsyncSession, guild_id: int, user_id: int | None) -> int:
    """Remove all of one owner's rules (an import that replaces them runs this first, in the same transaction)."""
    result = await session.execute(delete(DictionaryRuleRow).where(_owner(guild_id, user_id)))
    return result.rowcount


# ---- leaving a guild ------------------------------------------------------------------------------------------------


async def forget_guild_chat(session: AsyncSession, guild_id: int) -> None:
    """Delete the guild's chat settings, bindings, nicknames and dictionary (the bot was removed from it)."""
    for model in (ChatSettingsRow, ChatChannelRow, NicknameRow, DictionaryRuleRow):
        await session.execute(delete(model).where(model.guild_id == guild_id))

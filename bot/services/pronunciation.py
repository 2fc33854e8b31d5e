"""The pronunciation dictionary service (/dictionary): a guild's and each member's rules, stored in `db.chat`,
checked and compiled by `bot.chat.dictionary`, applied to chat narration and to /say.

`owner` is a user id for a member's own rules, None for the guild's. Compiled dictionaries are cached per (guild,
member) and dropped when a rule of theirs changes, so a message costs no database read once its author has spoken.
"""

from __future__ import annotations

import asyncio
import logging

from cachetools import LRUCache

from bot.chat.dictionary import MAX_GUILD_RULES, MAX_USER_RULES, Dictionary, DictionaryError, Rule, check_rule
from bot.chat.dictionary_io import DictionaryImportError, export_rules, import_rules
from bot.errors import UserError
from db import chat as chat_db
from db.engine import Database
from db.errors import InvalidSetting

log = logging.getLogger(__name__)

MAX_CACHED = 1024  # compiled dictionaries kept (one per guild + member who spoke lately)
MAX_LISTED = 40  # rules shown by /dictionary list (the export has them all)


def _rules(rows: list[chat_db.DictionaryRule]) -> list[Rule]:
    return [Rule(r.pattern, r.replacement, r.is_regex) for r in rows]


def _key(pattern: str, regex: bool) -> str:
    """Plain rules are case-insensitive whole words: "GG" and "gg" are the same rule."""
    return pattern if regex else " ".join(pattern.casefold().split())


def limit_of(owner: int | None) -> int:
    return MAX_GUILD_RULES if owner is None else MAX_USER_RULES


def whose(owner: int | None) -> str:
    return "this server's" if owner is None else "your"


class PronunciationService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: LRUCache[tuple[int, int], Dictionary] = LRUCache(MAX_CACHED)

    # -- applying ----------------------------------------------------------------------------------------------------

    async def for_member(self, guild_id: int, user_id: int) -> Dictionary:
        """The compiled rules for `user_id`'s text in `guild_id` (their own win over the guild's)."""
        key = (guild_id, user_id)
        found = self._cache.get(key)
        if found is not None:
            return found
        async with self.db.sessions() as s:
            own = await chat_db.list_rules(s, guild_id, user_id)
            guild = await chat_db.list_rules(s, guild_id, None)
        # RE2 compiles fast, but 250 rules is still milliseconds: keep it off the event loop
        dictionary = await asyncio.to_thread(Dictionary.build, _rules(guild), _rules(own))
        self._cache[key] = dictionary
        return dictionary

    def forget_guild(self, guild_id: int) -> None:
        """Drop the guild's compiled dictionaries (its rules were deleted with `ChatConfig.forget_guild`)."""
        self._forget(guild_id, None)

    def _forget(self, guild_id: int, owner: int | None) -> None:
        for key in [k for k in self._cache if k[0] == guild_id and (owner is None or k[1] == owner)]:
            del self._cache[key]

    # -- editing -----------------------------------------------------------------------------------------------------

    async def add(self, guild_id: int, owner: int | None, pattern: str, replacement: str, regex: bool) -> Rule:
        try:
            rule = check_rule(Rule(pattern, replacement, regex))
        except DictionaryError as exc:
            raise UserError(f"That rule cannot be used: {exc}.") from None
        async with self.db.sessions.begin() as s:
            existing = await chat_db.list_rules(s, guild_id, owner)
            same = next((r for r in existing if r.is_regex == rule.regex and _key(r.pattern, r.is_regex) ==
                         _key(rule.pattern, rule.regex)), None)  # fmt: skip
            if same is None and len(existing) >= limit_of(owner):
                raise UserError(
                    f"{whose(owner).capitalize()} dictionary is full ({limit_of(owner)} rules). "
                    "Remove one with /dictionary remove first."
                )
            pattern = same.pattern if same is not None else rule.pattern  # adding "GG" again changes "gg"'s rule
            try:
                await chat_db.add_rule(s, guild_id, owner, pattern, rule.replacement, is_regex=rule.regex)
            except InvalidSetting as exc:
                raise UserError(f"That rule cannot be stored: {exc}.") from None
        self._forget(guild_id, owner)
        log.info("dictionary rule %r added in guild %s (owner %s)", rule.pattern[:40], guild_id, owner)
        return rule

    async def remove(self, guild_id: int, owner: int | None, pattern: str) -> int:
        pattern = pattern.strip()
        async with self.db.sessions.begin() as s:
            stored = {
                r.pattern
                for r in await chat_db.list_rules(s, guild_id, owner)
                if r.pattern == pattern or (not r.is_regex and _key(r.pattern, False) == _key(pattern, False))
            }
            removed = 0
            for each in stored:  # plain patterns match in any case, with their spaces squashed
                removed += await chat_db.remove_rule(s, guild_id, owner, each)
        if not removed:
            raise UserError(f"{whose(owner).capitalize()} dictionary has no rule for `{pattern[:40]}`.")
        self._forget(guild_id, owner)
        return removed

    async def list(self, guild_id: int, owner: int | None) -> list[Rule]:
        async with self.db.sessions() as s:
            return _rules(await chat_db.list_rules(s, guild_id, owner))

    async def export(self, guild_id: int, owner: int | None) -> str:
        return export_rules(await self.list(guild_id, owner))

    async def import_file(self, guild_id: int, owner: int | None, data: bytes) -> int:
        """Replace the owner's rules with the file's (all or nothing); every bad entry is reported at once."""
        try:
            rules = await asyncio.to_thread(import_rules, data, limit=limit_of(owner))
        except DictionaryImportError as exc:
            raise UserError(exc.summary()) from None
        async with self.db.sessions.begin() as s:
            await chat_db.clear_rules(s, guild_id, owner)
            for rule in rules:
                try:
                    await chat_db.add_rule(s, guild_id, owner, rule.pattern, rule.replacement, is_regex=rule.regex)
                except InvalidSetting as exc:  # the transaction rolls back: nothing was replaced
                    raise UserError(f"The file was not imported: `{rule.pattern[:40]}`: {exc}.") from None
        self._forget(guild_id, owner)
        log.info("%d dictionary rules imported in guild %s (owner %s)", len(rules), guild_id, owner)
        return len(rules)

    @staticmethod
    def describe(rules: list[Rule], owner: int | None) -> str:
        if not rules:
            return f"{whose(owner).capitalize()} dictionary is empty. Add a rule with /dictionary add."
        lines = [f"{whose(owner).capitalize()} dictionary ({len(rules)} of {limit_of(owner)} rules):"]
        for rule in rules[:MAX_LISTED]:
            kind = " (regex)" if rule.regex else ""
            lines.append(f"- `{rule.pattern}`{kind} → {rule.replacement or '(nothing)'}")
        if len(rules) > MAX_LISTED:
            lines.append(f"… and {len(rules) - MAX_LISTED} more: /dictionary export has them all.")
        return "\n".join(lines)

"""Chat narration: which messages of a text channel are read, and the words to say for each. Pure Python, no I/O,
no Discord objects (the cog turns a `discord.Message` into a `message.ChatMessage`)::

    verdict = check_message(message, ReadRules(skip_prefix="!", required_prefix=None))
    # Verdict(read, reason: SkipReason | None, content) -- bots, webhooks, system messages, @silent, prefixes
    message = dataclasses.replace(message, content=verdict.content)
    dictionary = Dictionary.build(guild_rules, user_rules)          # Rule(pattern, replacement, regex=False)
    cleaned = clean_message(message, resolver, CleanupOptions(honour_tags=False, max_seconds=30), dictionary)
    # CleanedMessage(text, spoken, has_words, truncated, fired) or None (nothing to say)
    name = message.author_name if throttle.should_announce(guild_id, author_id) else None
    script_text = compose(cleaned, name, template)                 # "alice said, hello" -> parse_script(...)
    speaker = preset_speaker(author_id, presets)                    # for members without a voice

`/say` gets the dictionary too: `Dictionary.apply(script_text) -> AppliedText(text, fired)` (tags untouched).
Files: `dictionary_io.import_rules(data, limit=...)` / `export_rules(rules)`.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "ChatMessage": "bot.chat.message",
    "Attachment": "bot.chat.message",
    "Resolver": "bot.chat.message",
    "MappingResolver": "bot.chat.message",
    "CleanupOptions": "bot.chat.cleanup",
    "CleanedMessage": "bot.chat.cleanup",
    "clean_message": "bot.chat.cleanup",
    "ReadRules": "bot.chat.rules",
    "Verdict": "bot.chat.rules",
    "SkipReason": "bot.chat.rules",
    "check_message": "bot.chat.rules",
    "AnnouncementThrottle": "bot.chat.rules",
    "compose": "bot.chat.rules",
    "preset_speaker": "bot.chat.rules",
    "Dictionary": "bot.chat.dictionary",
    "DictionaryError": "bot.chat.dictionary",
    "Rule": "bot.chat.dictionary",
    "Fired": "bot.chat.dictionary",
    "import_rules": "bot.chat.dictionary_io",
    "export_rules": "bot.chat.dictionary_io",
    "DictionaryImportError": "bot.chat.dictionary_io",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    # Lazy: importing one module (say `rules`) does not load the emoji table or RE2.
    if name not in _WHERE:
        raise AttributeError(f"module 'bot.chat' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

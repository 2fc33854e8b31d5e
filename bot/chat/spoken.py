"""Last touches on plain text before it is spoken: Unicode emoji -> their names, long repeats capped, whitespace.

Emoji names come from the `emoji` package (the Unicode CLDR short names it maintains), e.g. 😂 -> "face with tears of
joy". A run of the same character (or the same emoji) longer than `MAX_REPEAT` is cut to `MAX_REPEAT`; digits are
left alone because "1000000" is a number, not a shout.
"""

from __future__ import annotations

import re

import emoji

MAX_REPEAT = 3
MAX_NAME_CHARS = 32  # a spoken display name ("alice said"); Discord allows 32 characters too

_REPEATED = re.compile(r"([^\d])\1{" + str(MAX_REPEAT) + ",}", re.DOTALL)
# Private-use planes 15 and 16: cleanup uses them internally as placeholders, so they never come from input.
_PRIVATE_USE = re.compile("[\U000f0000-\U0010ffff]")
_SPACE_BEFORE_PUNCTUATION = re.compile(r" (?=[,.!?;:…)]+(?: |$))|(?<=\() ")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def strip_unsafe(text: str) -> str:
    """Drop control characters and private-use code points (no sound, and reserved for cleanup's placeholders)."""
    return _PRIVATE_USE.sub("", _CONTROL.sub(" ", text))


def cap_repeats(text: str) -> str:
    return _REPEATED.sub(lambda m: m.group(1) * MAX_REPEAT, text)


def emoji_name(match: object) -> str:
    """The spoken name of one `emoji.analyze` match: ":thumbs_up:" -> "thumbs up"."""
    data = getattr(match, "data", None)
    if data is None:  # a ZWJ sequence that is not one named emoji: name its parts
        return " ".join(emoji_name(part) for part in getattr(match, "emojis", ()))
    return " ".join(data.get("en", "").strip(":").replace("_", " ").split())


def name_emoji(text: str) -> str:
    """Replace each Unicode emoji by its name; more than `MAX_REPEAT` of the same emoji in a row count as three."""
    if text.isascii():
        return text  # the common case, and no emoji is pure ASCII (keycaps add U+FE0F U+20E3)
    out: list[str] = []
    last, run = None, 0
    for token in emoji.analyze(text, non_emoji=True, join_emoji=True):
        if isinstance(token.value, str):
            out.append(token.chars)
            if not token.chars.isspace():
                last, run = None, 0
            continue
        run = run + 1 if token.chars == last else 1
        last = token.chars
        if run <= MAX_REPEAT:
            out.append(f" {emoji_name(token.value)} ")
    return "".join(out)


def squash_spaces(text: str) -> str:
    """Every run of whitespace (newlines too) -> one space, none before punctuation that ends a clause ("Alice ,"
    after a mention) nor inside parentheses; one space is kept at either end if there was any."""
    return _SPACE_BEFORE_PUNCTUATION.sub("", re.sub(r"\s+", " ", text))


def speakable(text: str) -> str:
    """Emoji named, repeats capped, whitespace squashed (leading and trailing single spaces are kept)."""
    return squash_spaces(cap_repeats(name_emoji(cap_repeats(text))))


def speakable_name(name: str) -> str:
    """A display name as it should be said: custom emoji and Unicode emoji by name, at most `MAX_NAME_CHARS`."""
    name = re.sub(r"<a?:(\w{1,32}):\d{1,20}>", lambda m: f" {m.group(1).replace('_', ' ')} ", strip_unsafe(name))
    spoken = " ".join(speakable(name).split())
    return spoken[:MAX_NAME_CHARS].strip()

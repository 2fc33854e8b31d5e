"""Script text <-> segments of plain text and tags, with the escaping of `bot.narration.script`.

The script language (see `bot.narration.script`) reads `[...]` as a tag and `\\[` / `\\]` as literal brackets; any
other backslash is literal. Chat cleanup and the pronunciation dictionary work on plain text between tags, then join
the pieces back into script text that the parser reads as intended: every bracket in plain text comes out escaped, so
a member's `[citation needed]` or a dictionary replacement can never become a tag or a syntax error.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Text:
    text: str  # plain words, no escapes


@dataclass(frozen=True)
class Tag:
    source: str  # a tag as written (`[Excited]`), or script the parser will reject (an unclosed `[`), kept verbatim


Segment = Text | Tag


def escape(text: str) -> str:
    """Plain text -> script text that reads back as exactly `text`."""
    return text.replace("[", "\\[").replace("]", "\\]")


def split_script(source: str) -> list[Segment]:
    """Cut script text into plain `Text` (escapes resolved) and `Tag` pieces, scanning as the script parser does."""
    segments: list[Segment] = []
    chars: list[str] = []
    i = 0
    while i < len(source):
        ch = source[i]
        if ch == "\\" and i + 1 < len(source) and source[i + 1] in "[]":
            chars.append(source[i + 1])
            i += 2
            continue
        if ch != "[":
            chars.append(ch)
            i += 1
            continue
        close = i + 1
        while close < len(source) and source[close] not in "[]":
            close += 1
        # unclosed: the parser rejects it; leave the rest exactly as it is
        end = close + 1 if close < len(source) and source[close] == "]" else len(source)
        _flush(chars, segments)
        segments.append(Tag(source[i:end]))
        i = end
    _flush(chars, segments)
    return segments


def _flush(chars: list[str], segments: list[Segment]) -> None:
    if chars:
        segments.append(Text("".join(chars)))
        chars.clear()


def join_script(segments: Iterable[Segment]) -> str:
    """Segments -> script text; adjacent texts merge, and a text ending in `\\` is kept from escaping a next tag."""
    out: list[str] = []
    pending: list[str] = []
    for segment in segments:
        if isinstance(segment, Text):
            pending.append(segment.text)
            continue
        text = escape("".join(pending))
        pending.clear()
        if text.endswith("\\"):
            text += " "  # `\` right before `[` would turn the tag into a literal bracket
        out.append(text)
        out.append(segment.source)
    out.append(escape("".join(pending)))
    return "".join(out)


def plain_text(segments: Iterable[Segment]) -> str:
    """The words only (tags left out): what a listener hears, for length estimates and "is there anything to say"."""
    return "".join(s.text for s in segments if isinstance(s, Text))

"""A chat message -> the script text to speak (or None: nothing to say). Pure: no I/O, no Discord objects.

What a listener hears instead of Discord markup, in the order it is handled:

- spoilers `||...||` are skipped (nothing is said, so nothing leaks);
- code blocks ```...``` -> "a code block"; inline code -> its text (URLs in it still become "a link");
- markdown escapes (`\\*`) -> the character itself;
- masked links `[text](https://...)` -> text; other URLs -> "a link";
- custom emoji `<:name:id>` / `<a:name:id>` -> name; user/role/channel mentions -> display names from the `Resolver`
  ("someone", "a role", "a channel" when unknown); `@everyone`/`@here` -> "everyone"/"here"; slash-command mentions
  -> the command's name; timestamps `<t:...>` -> "a time";
- emotion tags: when the guild honours tags in chat, known emotions (`bot.narration.emotions`) and `[Pause ...]` are
  kept as tags (at most `MAX_CHAT_TAGS`; a pause counts toward the length limit); when it does not, they are dropped
  (they were meant as directions, not words). Any other bracketed text (`[citation needed]`, `[@bob]`, free-form
  instructions) is read as written: its brackets are escaped, so it is never a tag, never a voice switch to someone
  else's voice and never a script syntax error;
- markdown is stripped: headers, subtext, quotes, list bullets, bold, italic, underline, strikethrough;
- Unicode emoji -> their names; runs of more than 3 of the same character or emoji -> 3; whitespace squashed;
- the text is cut at a sentence end to `max_seconds` of audio (`bot.narration.script.estimate_seconds`);
- attachments -> "sent an image" / "sent 2 files" (after the words, never cut).

Markup found in one step is replaced by a private-use placeholder character, so later steps (markdown) cannot mangle
it and names or code from a message are never re-read as markup.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.chat import spoken
from bot.chat.length import cut_to_seconds, pause_seconds
from bot.chat.markup import Segment, Tag, Text, join_script, plain_text
from bot.chat.message import Attachment, ChatMessage, Resolver
from bot.narration import emotions

if TYPE_CHECKING:
    from bot.chat.dictionary import Dictionary, Fired

DEFAULT_MAX_SECONDS = 30.0
MIN_MAX_SECONDS = 5.0
MAX_MAX_SECONDS = 120.0
MAX_CHAT_TAGS = 16  # the script allows 64 segments; a chat message never needs more than a few tags
MAX_INPUT_CHARS = 4000  # Discord's longest message (Nitro); more cannot be read within the limit anyway

LINK = "a link"
CODE_BLOCK = "a code block"
UNKNOWN_USER, UNKNOWN_ROLE, UNKNOWN_CHANNEL, TIMESTAMP = "someone", "a role", "a channel", "a time"
IMAGE_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "gif", "webp", "bmp", "avif", "heic", "heif", "tif", "tiff"})

_SENTINEL_BASE = 0xF0001  # placeholders: Supplementary Private Use Area-A (0xF0000 marks tags in `length`)
_SENTINEL = re.compile("[\U000f0001-\U000ffffd]")

_SPOILER = re.compile(r"\|\|.+?\|\|", re.DOTALL)
_CODE_BLOCK = re.compile(r"```.*?```", re.DOTALL)
_INLINE_CODE = re.compile(r"``(.+?)``|`([^`]+)`", re.DOTALL)
_ESCAPE = re.compile(r"\\([^\w\s\U000f0000-\U0010ffff])")
_MASKED_LINK = re.compile(r"\[([^\[\]\n]{1,200})\]\(\s*<?https?://[^\s()<>]+>?(?:\s+\"[^\"\n]*\")?\s*\)")
_URL = re.compile(r"<?\b(?:https?|ftp)://[^\s<>|]+>?", re.IGNORECASE)
_URL_TRAILER = ".,:;!?'\"”’)]*_~"
_CUSTOM_EMOJI = re.compile(r"<a?:(\w{1,32}):\d{1,20}>")
_USER = re.compile(r"<@!?(\d{1,20})>")
_ROLE = re.compile(r"<@&(\d{1,20})>")
_CHANNEL = re.compile(r"<#(\d{1,20})>")
_COMMAND = re.compile(r"</([\w\- ]{1,100}):\d{1,20}>")
_TIME = re.compile(r"<t:-?\d{1,16}(?::[tTdDfFsSR])?>")
_EVERYONE = re.compile(r"@(everyone|here)\b")
_TAG = re.compile(r"\[([^\[\]\n]{1," + str(emotions.MAX_FREE_FORM_CHARS) + r"})\]")
_LINE_PREFIXES = [
    re.compile(r"^[ \t]*#{1,3}[ \t]+", re.MULTILINE),  # headers
    re.compile(r"^[ \t]*-#[ \t]+", re.MULTILINE),  # subtext
    re.compile(r"^[ \t]*>(?:>>)?[ \t]?", re.MULTILINE),  # quotes `> ` and `>>> `
    re.compile(r"^[ \t]*[-*+•][ \t]+", re.MULTILINE),  # list bullets (numbers stay: they are read)
]
# Paired inline markers -> their contents. Bounded spans keep unmatched openers cheap; `_` only at word edges
# (snake_case is not italic on Discord); `*` italics need a non-space next to each marker ("5 * 3 * 2" is maths).
_PAIRS = [
    re.compile(r"\*\*(?!\s)(.{1,500}?)\*\*"),
    re.compile(r"__(.{1,500}?)__"),
    re.compile(r"~~(.{1,500}?)~~"),
    re.compile(r"\*(?![\s*])(.{1,500}?)(?<![\s*])\*"),
    re.compile(r"(?<!\w)_(?![\s_])(.{1,500}?)(?<![\s_])_(?!\w)"),
]
_STRAY_MARKERS = re.compile(r"\*{2,}|_{2,}|~{2,}|\|{2,}|`+")


@dataclass(frozen=True)
class CleanupOptions:
    honour_tags: bool = False  # the guild's "emotion tags in chat" switch
    max_seconds: float = DEFAULT_MAX_SECONDS  # the guild's longest message, seconds of audio (5..120)

    def __post_init__(self) -> None:
        if not MIN_MAX_SECONDS <= self.max_seconds <= MAX_MAX_SECONDS:
            raise ValueError(
                f"the longest message must be {MIN_MAX_SECONDS:g} to {MAX_MAX_SECONDS:g} seconds, not {self.max_seconds:g}"
            )


@dataclass(frozen=True)
class CleanedMessage:
    text: str  # script text for `parse_script`: brackets escaped, tags only where honoured
    spoken: str  # the words alone (what the listener hears, no tags), for logs and the sidecar
    has_words: bool  # False when only attachments are mentioned ("sent an image"), for the name announcement
    truncated: bool  # the words were cut to the length limit
    fired: tuple[Fired, ...] = field(default=())  # pronunciation dictionary rules that changed the text


def clean_message(
    message: ChatMessage,
    resolver: Resolver,
    options: CleanupOptions = CleanupOptions(),  # frozen, so one shared default is safe
    dictionary: Dictionary | None = None,
) -> CleanedMessage | None:
    """What to say for `message` (None: nothing to say), with `dictionary` applied to the words if given."""
    segments = clean_segments(message.content, resolver, options)
    fired: tuple[Fired, ...] = ()
    if dictionary is not None:
        applied = dictionary.apply_segments(segments)
        segments, fired = _normalise(applied.segments), applied.fired
    segments, truncated = cut_to_seconds(segments, options.max_seconds)
    segments = _normalise(segments)
    has_words = _has_words(segments)
    phrase = attachments_phrase(message.attachments)
    if phrase:
        segments = _normalise([*segments, Text((". " if has_words and not _ends_sentence(segments) else " ") + phrase)])
    if not _has_words(segments):
        return None
    return CleanedMessage(join_script(segments), plain_text(segments).strip(), has_words, truncated, fired)


def clean_segments(content: str, resolver: Resolver, options: CleanupOptions) -> list[Segment]:
    """Message content -> normalised plain-text and tag segments (no length cut, no dictionary)."""
    protected = _Protected()
    text = spoken.strip_unsafe(content[:MAX_INPUT_CHARS])
    text = _SPOILER.sub(" ", text)
    text = _CODE_BLOCK.sub(lambda m: protected.text(f" {CODE_BLOCK} "), text)
    text = _INLINE_CODE.sub(lambda m: protected.text(_URL.sub(f" {LINK} ", m.group(1) or m.group(2))), text)
    text = _ESCAPE.sub(lambda m: protected.text(m.group(1)), text)
    text = _MASKED_LINK.sub(lambda m: m.group(1), text)
    text = _URL.sub(lambda m: _link(m.group(0), protected), text)
    text = _references(text, resolver, protected)
    text = _TAG.sub(_TagFilter(options.honour_tags, protected), text)
    text = _strip_markdown(text)
    return _normalise([_speakable(s) for s in protected.resolve(text)])


def attachments_phrase(attachments: tuple[Attachment, ...]) -> str:
    """ "sent an image", "sent 2 files", "sent an image and a file"; "" without attachments."""
    images = sum(1 for a in attachments if _is_image(a))
    files = len(attachments) - images
    parts = [_count(images, "an image", "images"), _count(files, "a file", "files")]
    said = " and ".join(p for p in parts if p)
    return f"sent {said}" if said else ""


def _count(n: int, one: str, many: str) -> str:
    return "" if n == 0 else one if n == 1 else f"{n} {many}"


def _is_image(attachment: Attachment) -> bool:
    if attachment.content_type:
        return attachment.content_type.lower().startswith("image/")
    return attachment.filename.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS if "." in attachment.filename else False


class _Protected:
    """Pieces already in their final form, each standing in the text as one private-use placeholder character."""

    def __init__(self) -> None:
        self.pieces: list[Segment] = []

    def put(self, segment: Segment) -> str:
        self.pieces.append(segment)
        return chr(_SENTINEL_BASE + len(self.pieces) - 1)

    def text(self, text: str) -> str:
        return self.put(Text(text))

    def resolve(self, text: str) -> list[Segment]:
        segments: list[Segment] = []
        last = 0
        for match in _SENTINEL.finditer(text):
            segments.append(Text(text[last : match.start()]))
            segments.append(self.pieces[ord(match.group()) - _SENTINEL_BASE])
            last = match.end()
        segments.append(Text(text[last:]))
        return segments


def _link(url: str, protected: _Protected) -> str:
    """A URL -> "a link", giving back punctuation that ends the sentence rather than the URL."""
    core = url.strip("<>")
    trailer = ""
    while core and core[-1] in _URL_TRAILER and not (core[-1] == ")" and core.count("(") >= core.count(")")):
        trailer = core[-1] + trailer
        core = core[:-1]
    return protected.text(f" {LINK}") + trailer + " "


def _references(text: str, resolver: Resolver, protected: _Protected) -> str:
    """Custom emoji, mentions, slash-command mentions and timestamps -> names (protected from markdown)."""

    def named(lookup: Callable[[int], str | None], fallback: str) -> Callable[[re.Match[str]], str]:
        return lambda m: protected.text(f" {spoken.speakable_name(lookup(int(m.group(1))) or '') or fallback} ")

    text = _CUSTOM_EMOJI.sub(lambda m: protected.text(f" {m.group(1).replace('_', ' ')} "), text)
    text = _USER.sub(named(resolver.user, UNKNOWN_USER), text)
    text = _ROLE.sub(named(resolver.role, UNKNOWN_ROLE), text)
    text = _CHANNEL.sub(named(resolver.channel, UNKNOWN_CHANNEL), text)
    text = _COMMAND.sub(lambda m: protected.text(f" {m.group(1)} "), text)
    text = _TIME.sub(lambda m: protected.text(f" {TIMESTAMP} "), text)
    return _EVERYONE.sub(lambda m: protected.text(m.group(1)), text)


class _TagFilter:
    """For `_TAG.sub`: keep known emotion and pause tags (if honoured, up to MAX_CHAT_TAGS) or drop them; leave any
    other bracketed text as words (its brackets are escaped when the script is joined)."""

    def __init__(self, honour: bool, protected: _Protected) -> None:
        self.honour, self.protected, self.kept = honour, protected, 0

    def __call__(self, match: re.Match[str]) -> str:
        body = " ".join(match.group(1).split())
        is_pause = body.lower().split(maxsplit=1)[0:1] == ["pause"] if body else False
        if not is_pause and (not body or emotions.lookup(body)[0] is None):
            return match.group(0)
        tag = f"[{body}]"
        if not self.honour or self.kept >= MAX_CHAT_TAGS or (is_pause and pause_seconds(tag) == 0.0):
            return " "
        self.kept += 1
        return self.protected.put(Tag(tag))


def _strip_markdown(text: str) -> str:
    for prefix in _LINE_PREFIXES:
        text = prefix.sub("", text)
    for _ in range(3):  # nested markers (`**__x__**`) unwrap one layer per pass
        before = text
        for pair in _PAIRS:
            text = pair.sub(r"\1", text)
        if text == before:
            break
    return _STRAY_MARKERS.sub(" ", text)


def _speakable(segment: Segment) -> Segment:
    return Text(spoken.speakable(segment.text)) if isinstance(segment, Text) else segment


def _normalise(segments: list[Segment]) -> list[Segment]:
    """Merge adjacent texts, squash whitespace, trim both ends, drop empty texts."""
    merged: list[Segment] = []
    for segment in segments:
        if isinstance(segment, Text) and merged and isinstance(merged[-1], Text):
            merged[-1] = Text(merged[-1].text + segment.text)
        else:
            merged.append(segment)
    out = [Text(spoken.squash_spaces(s.text)) if isinstance(s, Text) else s for s in merged]
    if out and isinstance(out[0], Text):
        out[0] = Text(out[0].text.lstrip())
    if out and isinstance(out[-1], Text):
        out[-1] = Text(out[-1].text.rstrip())
    return [s for s in out if not (isinstance(s, Text) and not s.text)]


def _has_words(segments: list[Segment]) -> bool:
    return any(c.isalnum() for c in plain_text(segments))


def _ends_sentence(segments: list[Segment]) -> bool:
    return plain_text(segments).rstrip().endswith((".", "!", "?", "…", "。", "！", "？"))

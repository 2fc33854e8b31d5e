"""The script language: text with `[tags]` -> a frozen `Script` of speech pieces and pauses. Pure, no I/O.

    [Whispering] Come closer. [Pause 1.5s] [Excited] It's here! [@bob] [Angry] Who said that?

- `[Emotion]` (case-insensitive, `emotions.EMOTIONS` or an alias) applies until the next emotion tag or voice switch;
  any other tag text is a free-form instruction; `[Neutral]` clears it.
- `[Pause]` = 0.8 s, `[Pause 1.5s]`, `[Pause 500ms]`, `[Pause 2]` (seconds; units in any case, `5MS` is 5 ms); at
  most 10 s each and `max_pause_total_s` (30 s by default) in all, so silence that costs nothing to render cannot
  fill a voice channel (and the bot's memory) for minutes.
- `[@name]` switches to another registered voice and resets the emotion (a new character speaks).
- `\\[` and `\\]` are literal brackets; a lone `]` outside a tag is literal text.
- Control characters (other than newline, carriage return and tab) and lone surrogates are refused with their
  position: they are invisible in Discord, and a lone surrogate cannot even be stored (it has no UTF-8 form).
- Speech longer than about `max_piece_seconds` of audio is split at sentence boundaries (then clauses, then words),
  because long single generations drift (reference §7).

Positions are 0-based character offsets into the source text; `Speech.start:end` spans the source of its words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from bot.narration import emotions

DEFAULT_PAUSE_S = 0.8
MAX_PAUSE_S = 10.0
DEFAULT_MAX_PAUSE_TOTAL_S = 30.0  # all pauses of one script together (NARRATOR_MAX_PAUSE_TOTAL_S)
MAX_TAG_CHARS = emotions.MAX_FREE_FORM_CHARS
DEFAULT_PIECE_SECONDS = 20.0
# Speaking rates for the length estimate: ~15 characters/s for alphabetic scripts, ~4.5 for CJK (one syllable each).
LATIN_CHARS_PER_S = 15.0
CJK_CHARS_PER_S = 4.5

_PAUSE = re.compile(r"^pause(?:\s+(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|sec|secs|second|seconds)?)?$", re.IGNORECASE)
# C0/C1 control characters except tab, newline and carriage return; U+D800-U+DFFF are lone surrogates.
_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+|(?<=[。！？])")
_CLAUSE_END = re.compile(r"(?<=[,;:，；：、—])\s*")


class ScriptError(ValueError):
    """A script that cannot be rendered: `position` (0-based character offset) and `reason` say where and why."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"at character {position + 1}: {reason}")
        self.position = position
        self.reason = reason


@dataclass(frozen=True)
class Speech:
    text: str  # what to say, whitespace-normalised, escapes resolved
    instruct: str | None  # the delivery instruction (emotion or free-form), None = neutral
    emotion: str | None  # the table name of the emotion, None for neutral or free-form
    voice: str | None  # None = the narrator; else a `[@name]` name as written (compare case-insensitively)
    start: int  # source span of the words
    end: int


@dataclass(frozen=True)
class Pause:
    seconds: float
    start: int  # source span of the tag
    end: int


@dataclass(frozen=True)
class Script:
    source: str
    items: tuple[Speech | Pause, ...]

    @property
    def speeches(self) -> tuple[Speech, ...]:
        return tuple(i for i in self.items if isinstance(i, Speech))

    @property
    def voices(self) -> tuple[str, ...]:
        """The distinct `[@name]` voices (lower-cased), in order of first use."""
        return tuple(dict.fromkeys(s.voice.lower() for s in self.speeches if s.voice is not None))

    @property
    def pause_seconds(self) -> float:
        return sum(i.seconds for i in self.items if isinstance(i, Pause))


def estimate_seconds(text: str) -> float:
    """Rough spoken length of `text` in seconds (used to split long speech and for the first ETA guess)."""
    cjk = len(_CJK.findall(text))
    return cjk / CJK_CHARS_PER_S + (len(text) - cjk) / LATIN_CHARS_PER_S


@dataclass
class _State:
    instruct: str | None = None
    emotion: str | None = None
    voice: str | None = None


class _Parser:
    def __init__(
        self,
        source: str,
        voice_exists: Callable[[str], bool] | None,
        piece_seconds: float,
        max_pause_total_s: float = DEFAULT_MAX_PAUSE_TOTAL_S,
    ) -> None:
        self.source = source
        self.voice_exists = voice_exists
        self.piece_seconds = piece_seconds
        self.max_pause_total_s = max_pause_total_s
        self.pause_total_s = 0.0
        self.state = _State()
        self.items: list[Speech | Pause] = []
        self.chars: list[tuple[str, int]] = []  # pending text: (character, its source position)

    def parse(self) -> list[Speech | Pause]:
        src, i = self.source, 0
        while i < len(src):
            ch = src[i]
            if ch == "\\" and i + 1 < len(src) and src[i + 1] in "[]":
                self.chars.append((src[i + 1], i + 1))
                i += 2
            elif ch == "[":
                i = self._tag(i)
            else:
                self.chars.append((ch, i))
                i += 1
        self._flush()
        return self.items

    def _tag(self, open_at: int) -> int:
        src = self.source
        close = open_at + 1
        while close < len(src) and src[close] not in "[]":
            close += 1
        if close >= len(src) or src[close] == "[":
            raise ScriptError(open_at, "this `[` is never closed; close the tag with `]` or write `\\[` for a bracket")
        body = src[open_at + 1 : close].strip()
        if not body:
            raise ScriptError(open_at, "empty tag `[]`; write an emotion like `[Calm]`, or `\\[` for a bracket")
        if len(body) > MAX_TAG_CHARS:
            raise ScriptError(open_at, f"tag is {len(body)} characters long; keep it under {MAX_TAG_CHARS}")
        self._flush()
        self._apply(body, open_at, close + 1)
        return close + 1

    def _apply(self, body: str, start: int, end: int) -> None:
        if body.startswith("@"):
            self._switch_voice(body[1:].strip(), start)
        elif body.lower().split(maxsplit=1)[0] == "pause":
            self._pause(_pause_seconds(body, start), start, end)
        else:
            emotion, instruct = emotions.lookup(body)
            self.state.emotion = emotion if instruct else None  # `[Neutral]` clears both
            self.state.instruct = instruct

    def _pause(self, seconds: float, start: int, end: int) -> None:
        self.pause_total_s += seconds
        if self.pause_total_s > self.max_pause_total_s + 1e-9:
            raise ScriptError(
                start,
                f"the pauses add up to more than {self.max_pause_total_s:g} s, the limit for one script "
                "(NARRATOR_MAX_PAUSE_TOTAL_S); use fewer or shorter pauses",
            )
        self.items.append(Pause(seconds, start, end))

    def _switch_voice(self, name: str, position: int) -> None:
        if not name:
            raise ScriptError(position, "`[@]` names no voice; write `[@name]` with a registered voice name")
        if self.voice_exists is not None and not self.voice_exists(name):
            raise ScriptError(position, f"unknown voice `{name[:40]}`; use one listed by /voice list")
        self.state = _State(voice=name)

    def _flush(self) -> None:
        chars, self.chars = self.chars, []
        for piece in _split_pieces(chars, self.piece_seconds):
            text = " ".join("".join(c for c, _ in piece).split())
            if not any(c.isalnum() for c in text):
                continue  # punctuation or whitespace alone is nothing to say
            first, last = _span(piece)
            st = self.state
            self.items.append(Speech(text, st.instruct, st.emotion, st.voice, first, last))


def _span(piece: list[tuple[str, int]]) -> tuple[int, int]:
    kept = [pos for c, pos in piece if not c.isspace()]
    return kept[0], kept[-1] + 1


def _pause_seconds(body: str, position: int) -> float:
    match = _PAUSE.match(" ".join(body.split()))
    if match is None:
        raise ScriptError(
            position, f"`[{body[:40]}]` is not a pause; write `[Pause]`, `[Pause 1.5s]` or `[Pause 500ms]`"
        )
    number, unit = match.groups()
    seconds = DEFAULT_PAUSE_S if number is None else float(number) / (1000.0 if (unit or "").lower() == "ms" else 1.0)
    if seconds > MAX_PAUSE_S:
        raise ScriptError(position, f"a pause of {seconds:g} s is too long; the limit is {MAX_PAUSE_S:g} s")
    return seconds


def _check_characters(text: str) -> None:
    bad = _FORBIDDEN.search(text)
    if bad is not None:
        code = ord(bad.group())
        what = "a lone surrogate" if 0xD800 <= code <= 0xDFFF else "a control character"
        raise ScriptError(bad.start(), f"{what} (U+{code:04X}) is not allowed in a script; delete it")


def visible(text: str) -> str:
    """`text` with every character the parser refuses shown as `?`: safe to quote back to the user (a lone
    surrogate would make the reply itself unsendable)."""
    return _FORBIDDEN.sub("?", text)


def _split_pieces(chars: list[tuple[str, int]], max_seconds: float) -> list[list[tuple[str, int]]]:
    """Split pending text at sentence ends (then clause ends, then spaces) into pieces of <= max_seconds."""
    text = "".join(c for c, _ in chars)
    if estimate_seconds(text) <= max_seconds:
        return [chars]
    for pattern in (_SENTENCE_END, _CLAUSE_END, re.compile(r"\s+")):
        cuts = [m.end() for m in pattern.finditer(text) if 0 < m.end() < len(text)]
        if cuts:
            return _pack(chars, cuts, max_seconds)
    step = max(1, int(len(text) * max_seconds / estimate_seconds(text)))  # one unbroken run: cut anywhere
    return [chars[k : k + step] for k in range(0, len(chars), step)]


def _pack(chars: list[tuple[str, int]], cuts: list[int], max_seconds: float) -> list[list[tuple[str, int]]]:
    bounds = [0, *cuts, len(chars)]
    units = [chars[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
    pieces: list[list[tuple[str, int]]] = []
    current: list[tuple[str, int]] = []
    for unit in units:
        candidate = current + unit
        if current and estimate_seconds("".join(c for c, _ in candidate)) > max_seconds:
            pieces.append(current)
            current = unit
        else:
            current = candidate
    if current:
        pieces.append(current)
    # A unit that alone is too long (a run-on sentence) is split again at the next finer boundary.
    return [sub for piece in pieces for sub in _split_pieces(piece, max_seconds)] if len(pieces) > 1 else pieces


def parse_script(
    text: str,
    *,
    max_chars: int = 2000,
    max_segments: int = 64,
    voice_exists: Callable[[str], bool] | None = None,
    max_piece_seconds: float = DEFAULT_PIECE_SECONDS,
    max_pause_total_s: float = DEFAULT_MAX_PAUSE_TOTAL_S,
) -> Script:
    """Parse `text` into a `Script`; raises `ScriptError(position, reason)` for anything that cannot be rendered.

    `voice_exists(name)` says whether `[@name]` is a usable voice (None: accept every name); `max_segments` counts
    speech pieces and pauses after splitting; `max_pause_total_s` bounds all pauses together.
    """
    if not isinstance(text, str):
        raise TypeError(f"the script must be a str, got {type(text).__name__}")
    if len(text) > max_chars:
        raise ScriptError(
            max_chars,
            f"the script is {len(text)} characters long; the limit is {max_chars} (NARRATOR_MAX_SCRIPT_CHARS, "
            "or lower where the server set one with /settings)",
        )
    _check_characters(text)
    items = _Parser(text, voice_exists, max_piece_seconds, max_pause_total_s).parse()
    if len(items) > max_segments:
        raise ScriptError(
            items[max_segments].start,
            f"the script has {len(items)} segments (speech pieces and pauses); the limit is {max_segments}",
        )
    if not any(isinstance(i, Speech) for i in items):
        raise ScriptError(0, "there is nothing to say: add some words outside the [tags]")
    return Script(text, tuple(items))

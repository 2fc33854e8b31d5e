"""The pronunciation dictionary: a guild's and a member's rules applied to the words of a script (never its tags).

- A plain rule replaces a whole word or phrase, case-insensitively: "gg" -> "good game" changes "GG!" but not "eggs".
  An end of the pattern that is a letter or digit must sit at a word edge; CJK ends need none (no spaces there).
- A regex rule is a regular expression run by RE2 (google-re2): linear time in the text, no backtracking, so no
  pattern can hang the bot. Case-insensitive by default (`(?-i)` turns that off); the replacement is literal text.
  Patterns RE2 refuses (backreferences, lookaround) are rejected with a sentence saying why, as are patterns that
  match empty text or compile to more than `MAX_PROGRAM_SIZE` instructions.
- All rules look at the original text in one pass (a replacement is never replaced again). Where matches overlap, the
  member's rules win over the guild's, plain rules over regexes, longer phrases over shorter, earlier rules over later.
- Replacements are plain words: brackets in them are read literally (escaped), they cannot add tags.
- `fired` records which rules changed the text and how often (for the render's sidecar).

Limits: `MAX_GUILD_RULES` / `MAX_USER_RULES` (the database counts), pattern and replacement lengths, and at most
`MAX_MATCHES` matches looked at per text.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import re2

from bot.chat import spoken
from bot.chat.markup import Segment, Text, join_script, split_script

log = logging.getLogger(__name__)

MAX_GUILD_RULES = 200
MAX_USER_RULES = 50
MAX_PATTERN_CHARS = 100
MAX_REPLACEMENT_CHARS = 100
MAX_PROGRAM_SIZE = 2000  # RE2 instructions: `\pL+` is ~1200, `.{1000}` ~8000
MAX_REGEX_MEMORY = 1 << 20  # bytes RE2 may use to compile and run one pattern
MAX_MATCHES = (
    2000  # per text; past it, lower-priority rules are not looked at (the text is at most a few thousand chars)
)

USER, GUILD = "user", "guild"
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


class DictionaryError(ValueError):
    """A rule that cannot be used; the message is one sentence for the user."""


@dataclass(frozen=True)
class Rule:
    pattern: str
    replacement: str
    regex: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"pattern": self.pattern, "replacement": self.replacement, "regex": self.regex}


@dataclass(frozen=True)
class Fired:
    scope: str  # USER or GUILD
    rule: Rule
    count: int  # how many times it replaced something in this text

    def to_dict(self) -> dict[str, object]:
        return {"scope": self.scope, **self.rule.to_dict(), "count": self.count}


@dataclass(frozen=True)
class Applied:
    segments: tuple[Segment, ...]
    fired: tuple[Fired, ...]


@dataclass(frozen=True)
class AppliedText:
    text: str  # script text, tags as they were
    fired: tuple[Fired, ...]


def check_rule(rule: Rule) -> Rule:
    """The rule as it will be stored (pattern whitespace squashed); raises `DictionaryError` with the reason."""
    if not isinstance(rule.pattern, str) or not isinstance(rule.replacement, str) or not isinstance(rule.regex, bool):
        raise DictionaryError("a rule needs a text pattern, a text replacement and regex true or false")
    pattern = rule.pattern.strip() if rule.regex else " ".join(rule.pattern.split())
    replacement = " ".join(spoken.strip_unsafe(rule.replacement).split())
    if not pattern:
        raise DictionaryError("the pattern is empty; give the word or expression to replace")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise DictionaryError(f"the pattern is {len(pattern)} characters long; the limit is {MAX_PATTERN_CHARS}")
    if len(replacement) > MAX_REPLACEMENT_CHARS:
        raise DictionaryError(
            f"the replacement is {len(replacement)} characters long; the limit is {MAX_REPLACEMENT_CHARS}"
        )
    checked = Rule(pattern, replacement, rule.regex)
    if rule.regex:
        compile_regex(pattern)
    return checked


def compile_regex(pattern: str) -> re2._Regexp:
    """Compile with RE2 (case-insensitive, no captures); raises `DictionaryError` for what RE2 or our limits refuse."""
    options = re2.Options()
    options.case_sensitive = False
    options.never_capture = True  # replacements are literal, so groups are never needed (and RE2 is faster without)
    options.log_errors = False
    options.max_mem = MAX_REGEX_MEMORY
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as error:
        reason = error.args[0].decode("utf-8", "replace") if error.args and isinstance(error.args[0], bytes) else error
        raise DictionaryError(
            f"the regular expression `{pattern[:40]}` is not supported ({reason}); RE2 has no backreferences or "
            "lookaround"
        ) from None
    if compiled.programsize > MAX_PROGRAM_SIZE or compiled.reverseprogramsize > MAX_PROGRAM_SIZE:
        raise DictionaryError(
            f"the regular expression `{pattern[:40]}` is too complex ({compiled.programsize} steps; the limit is "
            f"{MAX_PROGRAM_SIZE}); use fewer or smaller repetitions"
        )
    if compiled.fullmatch("") is not None:
        raise DictionaryError(f"the regular expression `{pattern[:40]}` matches empty text; it must match something")
    return compiled


def _word_pattern(pattern: str) -> str:
    """Whole-word, whitespace-tolerant Python regex for a literal phrase (safe: it has no user-controlled operators)."""
    body = r"\s+".join(re.escape(word) for word in pattern.split())
    first, last = pattern[0], pattern[-1]
    left = r"(?<!\w)" if (first.isalnum() or first == "_") and not _CJK.match(first) else ""
    right = r"(?!\w)" if (last.isalnum() or last == "_") and not _CJK.match(last) else ""
    return left + body + right


@dataclass(frozen=True)
class _Compiled:
    tier: int  # lower wins an overlap
    order: int  # among one tier
    scope: str
    rule: Rule
    regex: object  # a compiled Python `re` pattern (plain rules) or RE2 pattern


@dataclass(frozen=True)
class _Match:
    start: int
    end: int
    compiled: _Compiled


class Dictionary:
    """Compiled rules of one member in one guild. Build once per message (or cache per guild+user until edited)."""

    def __init__(self, compiled: Sequence[_Compiled]) -> None:
        self._compiled = sorted(compiled, key=lambda c: (c.tier, c.order))

    @classmethod
    def build(cls, guild_rules: Sequence[Rule] = (), user_rules: Sequence[Rule] = ()) -> Dictionary:
        """Compile; a stored rule that no longer passes `check_rule` (limits changed) is skipped with a warning."""
        compiled: list[_Compiled] = []
        for base, scope, rules in ((0, USER, user_rules), (2, GUILD, guild_rules)):
            plain: list[Rule] = []
            for order, rule in enumerate(rules):
                try:
                    checked = check_rule(rule)
                except DictionaryError as error:
                    log.warning("skipping a stored %s dictionary rule %r: %s", scope, rule.pattern[:40], error)
                    continue
                if checked.regex:
                    compiled.append(_Compiled(base + 1, order, scope, checked, compile_regex(checked.pattern)))
                else:
                    plain.append(checked)
            # Longest phrase first, so "new york" beats "new" where both start.
            plain.sort(key=lambda r: -len(r.pattern))
            for order, rule in enumerate(plain):
                regex = re.compile(_word_pattern(rule.pattern), re.IGNORECASE)
                compiled.append(_Compiled(base, order, scope, rule, regex))
        return cls(compiled)

    @property
    def empty(self) -> bool:
        return not self._compiled

    def apply(self, script_text: str) -> AppliedText:
        """Apply to the words of script text (a `/say` script or a cleaned chat message); tags stay as written."""
        if self.empty:
            return AppliedText(script_text, ())
        applied = self.apply_segments(split_script(script_text))
        return AppliedText(join_script(applied.segments), applied.fired)

    def apply_segments(self, segments: Sequence[Segment]) -> Applied:
        counts: dict[_Compiled, int] = {}
        out: list[Segment] = []
        for segment in segments:
            if isinstance(segment, Text) and not self.empty:
                out.append(Text(self._replace(segment.text, counts)))
            else:
                out.append(segment)
        fired = tuple(Fired(c.scope, c.rule, n) for c, n in counts.items())
        return Applied(tuple(out), fired)

    def _replace(self, text: str, counts: dict[_Compiled, int]) -> str:
        chosen = self._choose(text)
        pieces: list[str] = []
        last = 0
        for match in chosen:
            pieces.append(text[last : match.start])
            pieces.append(match.compiled.rule.replacement)
            last = match.end
            counts[match.compiled] = counts.get(match.compiled, 0) + 1
        pieces.append(text[last:])
        return "".join(pieces)

    def _choose(self, text: str) -> list[_Match]:
        """Non-overlapping matches, taking the rules in priority order; each rule's own matches left to right."""
        starts: list[int] = []  # accepted spans, sorted by start (they never overlap)
        accepted: list[_Match] = []
        looked = 0
        for compiled in self._compiled:
            for found in compiled.regex.finditer(text):
                looked += 1
                if looked > MAX_MATCHES:
                    return sorted(accepted, key=lambda m: m.start)
                start, end = found.span()
                if start == end:
                    continue  # an empty match (`\b`) replaces nothing
                k = bisect.bisect_left(starts, start)
                if (k > 0 and accepted[k - 1].end > start) or (k < len(starts) and starts[k] < end):
                    continue
                starts.insert(k, start)
                accepted.insert(k, _Match(start, end, compiled))
        return accepted

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
# Matches looked at per text; past it, lower-priority rules are not looked at (a message is at most 4000 characters).
MAX_MATCHES = 1000

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


def _edges(pattern: str) -> tuple[bool, bool]:
    """Whether a plain pattern must start / end at a word edge: only where that end is a letter or digit of a
    spaced script (punctuation like ":)" and CJK, written without spaces, match anywhere)."""

    def wordy(ch: str) -> bool:
        return (ch.isalnum() or ch == "_") and not _CJK.match(ch)

    return wordy(pattern[0]), wordy(pattern[-1])


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def _phrases_regex(patterns: Sequence[str], left: bool, right: bool) -> re.Pattern[str]:
    """One Python regex for literal phrases sharing their edge rules, longest first (so "new york" beats "new").

    Safe without RE2: the alternatives are escaped literals, and one regex per edge class keeps `re`'s literal-prefix
    scan fast (lookarounds inside each alternative would make it ~200x slower)."""
    phrases = sorted(patterns, key=len, reverse=True)
    body = "|".join(r"\s+".join(re.escape(word) for word in phrase.split()) for phrase in phrases)
    return re.compile((r"(?<!\w)" if left else "") + f"(?:{body})" + (r"(?!\w)" if right else ""), re.IGNORECASE)


@dataclass(frozen=True)
class _Matcher:
    """One compiled regex: a regex rule, or all plain rules of one scope and edge class (`phrases` maps the
    lower-cased, space-squashed phrase to its rule)."""

    tier: int  # lower wins an overlap: member plain 0, member regex 1, guild plain 2, guild regex 3
    scope: str
    regex: Any  # `re.Pattern` (plain phrases) or RE2 pattern (a regex rule)
    rule: Rule | None = None
    phrases: Mapping[str, Rule] | None = None


@dataclass(frozen=True)
class _Match:
    start: int
    end: int
    scope: str
    rule: Rule


class Dictionary:
    """Compiled rules of one member in one guild. Build once per message (or cache per guild+user until edited)."""

    def __init__(self, matchers: Sequence[_Matcher]) -> None:
        self._matchers = tuple(matchers)  # in tier order; regex rules in their own order within a tier

    @classmethod
    def build(cls, guild_rules: Sequence[Rule] = (), user_rules: Sequence[Rule] = ()) -> Dictionary:
        """Compile; a stored rule that no longer passes `check_rule` (limits changed) is skipped with a warning, and
        only the first `MAX_USER_RULES` / `MAX_GUILD_RULES` rules are used."""
        matchers: list[_Matcher] = []
        for tier, scope, rules, limit in (
            (0, USER, user_rules, MAX_USER_RULES),
            (2, GUILD, guild_rules, MAX_GUILD_RULES),
        ):
            if len(rules) > limit:  # the database enforces the limits; this bounds the work if it ever did not
                log.warning("%d %s dictionary rules given; using the first %d", len(rules), scope, limit)
                rules = rules[:limit]
            phrases: dict[tuple[bool, bool], dict[str, Rule]] = {}
            regexes: list[_Matcher] = []
            for rule in rules:
                try:
                    checked = check_rule(rule)
                except DictionaryError as error:
                    log.warning("skipping a stored %s dictionary rule %r: %s", scope, rule.pattern[:40], error)
                    continue
                if checked.regex:
                    regexes.append(_Matcher(tier + 1, scope, compile_regex(checked.pattern), rule=checked))
                else:
                    phrases.setdefault(_edges(checked.pattern), {}).setdefault(_key(checked.pattern), checked)
            for (left, right), table in phrases.items():
                matchers.append(_Matcher(tier, scope, _phrases_regex(list(table), left, right), phrases=table))
            matchers.extend(regexes)
        return cls(matchers)

    @property
    def empty(self) -> bool:
        return not self._matchers

    def apply(self, script_text: str) -> AppliedText:
        """Apply to the words of script text (a `/say` script or a cleaned chat message); tags stay as written."""
        if self.empty:
            return AppliedText(script_text, ())
        applied = self.apply_segments(split_script(script_text))
        return AppliedText(join_script(applied.segments), applied.fired)

    def apply_segments(self, segments: Sequence[Segment]) -> Applied:
        counts: dict[tuple[str, Rule], int] = {}
        out: list[Segment] = []
        for segment in segments:
            if isinstance(segment, Text) and not self.empty:
                out.append(Text(self._replace(segment.text, counts)))
            else:
                out.append(segment)
        fired = tuple(Fired(scope, rule, n) for (scope, rule), n in counts.items())
        return Applied(tuple(out), fired)

    def _replace(self, text: str, counts: dict[tuple[str, Rule], int]) -> str:
        pieces: list[str] = []
        last = 0
        for match in self._choose(text):
            pieces.append(text[last : match.start])
            pieces.append(match.rule.replacement)
            last = match.end
            counts[match.scope, match.rule] = counts.get((match.scope, match.rule), 0) + 1
        pieces.append(text[last:])
        return "".join(pieces)

    def _choose(self, text: str) -> list[_Match]:
        """Non-overlapping matches, tier by tier. Plain phrases: leftmost, then longest; regex rules: in rule order,
        each left to right. At most `MAX_MATCHES` matches are looked at."""
        starts: list[int] = []  # accepted spans sorted by start (they never overlap)
        accepted: list[_Match] = []
        budget = MAX_MATCHES
        for tier in sorted({m.tier for m in self._matchers}):
            found, budget = self._candidates(text, tier, budget)
            for match in found:
                k = bisect.bisect_left(starts, match.start)
                if (k > 0 and accepted[k - 1].end > match.start) or (k < len(starts) and starts[k] < match.end):
                    continue
                starts.insert(k, match.start)
                accepted.insert(k, match)
            if budget <= 0:
                break
        return accepted

    def _candidates(self, text: str, tier: int, budget: int) -> tuple[list[_Match], int]:
        found: list[_Match] = []
        for matcher in (m for m in self._matchers if m.tier == tier):
            for hit in matcher.regex.finditer(text):
                budget -= 1
                if budget < 0:
                    return found, 0
                start, end = hit.span()
                rule = matcher.rule if matcher.phrases is None else matcher.phrases.get(_key(text[start:end]))
                if start < end and rule is not None:  # an empty match (`\b`) replaces nothing
                    found.append(_Match(start, end, matcher.scope, rule))
        if tier % 2 == 0:  # plain phrases from several edge classes: leftmost first, then the longest
            found.sort(key=lambda m: (m.start, m.start - m.end))
        return found, budget

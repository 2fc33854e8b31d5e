"""Dictionary files: export rules as JSON, import them back with every bad entry reported at once.

    [{"pattern": "gg", "replacement": "good game", "regex": false},
     {"pattern": "colou?r", "replacement": "colour", "regex": true}]

`regex` may be left out (false). An import either succeeds whole or raises `DictionaryImportError` listing each
problem with its entry number and line (bad JSON stops the scan where it breaks, since nothing after can be trusted).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from bot.chat.dictionary import DictionaryError, Rule, check_rule

MAX_IMPORT_BYTES = 128 * 1024  # 250 rules of the longest kind fit in about 70 KiB
_KEYS = frozenset({"pattern", "replacement", "regex"})
_WHITESPACE = " \t\n\r"


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based line of the file where the entry starts
    index: int  # 1-based entry number (0: the file as a whole)
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.index == 0 else f"entry {self.index} (line {self.line})"
        return f"{where}: {self.reason}"


class DictionaryImportError(DictionaryError):
    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__(self.summary())

    def summary(self, max_chars: int = 1800) -> str:
        """All problems, one per line, shortened to `max_chars` (a Discord message) with a count of the rest."""
        head = f"the file was not imported: {len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}"
        lines = [head]
        for k, problem in enumerate(self.problems):
            line = f"- {problem}"
            if sum(len(x) + 1 for x in lines) + len(line) > max_chars - 40:
                lines.append(f"- … and {len(self.problems) - k} more")
                break
            lines.append(line)
        return "\n".join(lines)


def export_rules(rules: Sequence[Rule]) -> str:
    """JSON text of `rules`, one object per line (easy to read and edit)."""
    body = ",\n".join("  " + json.dumps(rule.to_dict(), ensure_ascii=False) for rule in rules)
    return "[\n" + body + "\n]\n" if rules else "[]\n"


def import_rules(data: bytes | str, *, limit: int) -> tuple[Rule, ...]:
    """Checked rules from a dictionary file; `limit` is how many the importer may hold (the db's room)."""
    text, problems = _decode(data)
    if text is None:
        raise DictionaryImportError(problems)
    entries, problems = _entries(text)
    rules: list[Rule] = []
    seen: dict[tuple[str, bool], int] = {}
    for index, line, value in entries:
        try:
            rule = _rule(value)
        except DictionaryError as error:
            problems.append(Problem(line, index, str(error)))
            continue
        key = (rule.pattern.casefold(), rule.regex)
        if key in seen:
            problems.append(Problem(line, index, f"the pattern `{rule.pattern[:40]}` is already entry {seen[key]}"))
            continue
        seen[key] = index
        rules.append(rule)
    if len(entries) > limit:
        problems.append(Problem(1, 0, f"the file has {len(entries)} rules; there is room for {limit}"))
    if problems:
        raise DictionaryImportError(sorted(problems, key=lambda p: (p.line, p.index)))
    return tuple(rules)


def _decode(data: bytes | str) -> tuple[str | None, list[Problem]]:
    size = len(data.encode() if isinstance(data, str) else data)
    if size > MAX_IMPORT_BYTES:
        return None, [Problem(1, 0, f"the file is {size // 1024} KiB; the limit is {MAX_IMPORT_BYTES // 1024} KiB")]
    if isinstance(data, str):
        return data.lstrip("\ufeff"), []
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        return None, [Problem(line, 0, "the file is not UTF-8 text")]


def _entries(text: str) -> tuple[list[tuple[int, int, object]], list[Problem]]:
    """(entry number, line, decoded value) for each element of the top-level JSON array, and syntax problems."""
    decoder = json.JSONDecoder()
    entries: list[tuple[int, int, object]] = []
    pos = _skip(text, 0)
    if pos >= len(text) or text[pos] != "[":
        return [], [
            Problem(_line(text, pos), 0, 'the file must be a JSON list: [{"pattern": ..., "replacement": ...}]')
        ]
    pos = _skip(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        return [], _trailing(text, pos + 1)
    while True:
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as error:
            return entries, [Problem(error.lineno, len(entries) + 1, f"not valid JSON: {error.msg}")]
        entries.append((len(entries) + 1, _line(text, pos), value))
        pos = _skip(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            return entries, _trailing(text, pos + 1)
        return entries, [Problem(_line(text, pos), 0, "expected `,` or `]` after an entry")]


def _rule(value: object) -> Rule:
    if not isinstance(value, dict):
        raise DictionaryError('each entry must be an object like {"pattern": "gg", "replacement": "good game"}')
    unknown = sorted(set(value) - _KEYS)
    if unknown:
        raise DictionaryError(f"unknown field `{unknown[0][:20]}`; the fields are pattern, replacement and regex")
    for key in ("pattern", "replacement"):
        if not isinstance(value.get(key), str):
            raise DictionaryError(f"`{key}` must be text")
    regex = value.get("regex", False)
    if not isinstance(regex, bool):
        raise DictionaryError("`regex` must be true or false")
    return check_rule(Rule(value["pattern"], value["replacement"], regex))


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _trailing(text: str, pos: int) -> list[Problem]:
    pos = _skip(text, pos)
    return [] if pos >= len(text) else [Problem(_line(text, pos), 0, "there is text after the closing `]`")]

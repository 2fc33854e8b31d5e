"""Cut script segments to a length in seconds of audio, at a sentence end when one fits.

Lengths use `bot.narration.script.estimate_seconds` (the same characters-per-second estimate the renderer uses to
split speech), so "30 seconds" here means the same as everywhere else. A kept `[Pause]` counts its seconds; other
tags cost nothing.
"""

from __future__ import annotations

import re

from bot.chat.markup import Segment, Tag, Text
from bot.narration.script import ScriptError, estimate_seconds, parse_script

# A sentence ends after . ! ? … (closing quotes or brackets may follow) and before a space; CJK enders need no space.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)|[。！？]+")
_CLAUSE_END = re.compile(r"[,;:，；：、—]+(?=\s)|[，；：、]")
_SPACE = re.compile(r"\s+")
_TAG_MARK = "\U000f0000"  # stands for a tag while cutting; never in text (cleanup strips private-use input)


def pause_seconds(tag_source: str) -> float:
    """The seconds a `[Pause ...]` tag waits (0 for any other tag or for a pause the parser would reject)."""
    try:
        items = parse_script(f"{tag_source} x").items
    except ScriptError:
        return 0.0
    first = items[0]
    return getattr(first, "seconds", 0.0)


def segments_seconds(segments: list[Segment]) -> float:
    return sum(estimate_seconds(s.text) if isinstance(s, Text) else pause_seconds(s.source) for s in segments)


def cut_to_seconds(segments: list[Segment], max_seconds: float) -> tuple[list[Segment], bool]:
    """(segments no longer than `max_seconds`, whether anything was cut). Cuts at the last sentence end that fits,
    else the last clause end, else the last space, else mid-word."""
    units: list[str | Tag] = [u for s in segments for u in (s.text if isinstance(s, Text) else [s])]
    flat = "".join(_TAG_MARK if isinstance(u, Tag) else u for u in units)
    pauses = [(k, pause_seconds(u.source)) for k, u in enumerate(units) if isinstance(u, Tag)]

    def seconds(k: int) -> float:  # of units[:k]; grows with k, so the longest prefix that fits is a binary search
        return estimate_seconds(flat[:k].replace(_TAG_MARK, "")) + sum(p for at, p in pauses if at < k)

    if seconds(len(units)) <= max_seconds:
        return segments, False
    lo, hi = 0, len(units)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if seconds(mid) <= max_seconds else (lo, mid - 1)
    cut = _last_boundary(flat, lo)
    return _rebuild(units[:cut]), True


def _last_boundary(flat: str, fits: int) -> int:
    for pattern in (_SENTENCE_END, _CLAUSE_END, _SPACE):
        ends = [m.end() for m in pattern.finditer(flat, 0, fits + 1) if 0 < m.end() <= fits]
        if ends and any(c.isalnum() for c in flat[: ends[-1]]):
            return ends[-1]
    return fits


def _rebuild(units: list[str | Tag]) -> list[Segment]:
    segments: list[Segment] = []
    chars: list[str] = []
    for unit in units:
        if isinstance(unit, Tag):
            if chars:
                segments.append(Text("".join(chars)))
                chars = []
            segments.append(unit)
        else:
            chars.append(unit)
    if chars:
        segments.append(Text("".join(chars)))
    return segments

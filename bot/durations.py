"""Durations for people: one way to say "about 12 s" or "about 3 min" (queue refusals, ETAs, limits)."""

from __future__ import annotations


def about(seconds: float) -> str:
    """A rough duration: '12 s' (at least 1 s) below 90 s, else '3 min'."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{round(seconds / 60)} min"

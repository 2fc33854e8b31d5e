"""Voice name keys: how two names are judged the same.

SQLite's `lower()` folds only ASCII, so "Émile" could be stored but never found again. Names are compared instead by a
key computed here, in Python, and stored beside the name (`voices.name_key`, unique per library or owner).
Pure: no database, no bot import; `bot/` uses it to compare names the same way.
"""

from __future__ import annotations

import unicodedata


def voice_name_key(name: str) -> str:
    """NFKC + casefold (applied twice, so the key of a key is itself), surrounding spaces dropped, inner runs of
    whitespace made one space: "  ÉMILE " and "émile", "Ｍｅｇａ" and "mega", "Straße" and "STRASSE" share
    a key."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return " ".join(folded.split())

"""Building the real services for tests that need no Discord session: the real engines over the given settings, and a
voice `Playback` over a client stand-in that knows no guild (so a render goes on without a voice connection)."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

from bot.app import build_engines, build_services
from bot.engine.protocol import Engine
from bot.services import Services
from bot.settings import Settings
from bot.voice.connections import Playback, VoiceLimits
from db.engine import Database


def no_discord() -> SimpleNamespace:
    """What `Playback` reads of a client, for a process that is connected to no guild."""
    return SimpleNamespace(get_guild=lambda _id: None, guilds=[])


def services_for(settings: Settings, db: Database, engines: Sequence[Engine] | None = None) -> Services:
    return build_services(
        settings, db, engines or build_engines(settings), Playback(no_discord(), VoiceLimits.of(settings))
    )

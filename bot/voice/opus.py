"""Find libopus for discord.py: the system library first, else the one bundled in `opuslib-next-bundled`."""

from __future__ import annotations

import ctypes.util
import importlib.util
import logging
from pathlib import Path

log = logging.getLogger(__name__)

OPUS_HELP = (
    "libopus was not found. Install the bundled copy with `pip install opuslib-next-bundled==0.1.1` "
    "(Linux x86-64) or the system library (`apt-get install libopus0`, `brew install opus`)."
)


class OpusNotFound(RuntimeError):
    pass


def bundled_opus_path() -> Path | None:
    spec = importlib.util.find_spec("opuslib_next")
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))) / "_native" / "libopus.so"
    return candidate if candidate.is_file() else None


def ensure_opus() -> str:
    """Load libopus into discord.py and return where it came from; raise `OpusNotFound` with the fix."""
    import discord.opus

    if discord.opus.is_loaded():
        return "already loaded"
    system = ctypes.util.find_library("opus")
    for candidate in (system, bundled_opus_path()):
        if candidate is None:
            continue
        try:
            discord.opus.load_opus(str(candidate))
        except OSError as exc:
            log.warning("Could not load libopus from %s: %s", candidate, exc)
            continue
        log.info("Loaded libopus from %s", candidate)
        return str(candidate)
    raise OpusNotFound(OPUS_HELP)

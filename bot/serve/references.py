"""Reference clips sent to `narrator serve` (`ref_audio`, `audio_sample`) go through the bot's own hostile-input
intake (bot/services/clip_intake.py: magic-byte and codec allowlist, 1-2 channels, 8-48 kHz, at most 60 s, a decode in
a resource-limited child, resampled to 24 kHz), so an HTTP client cannot reach further into libsndfile than a Discord
member can. Each refusal is one OpenAI-style 400 naming the field."""

from __future__ import annotations

import logging

from bot.errors import BadAttachment
from bot.serve.errors import ApiError, bad
from bot.services.clip_intake import BUSY_EVERYONE, ClipIntake
from bot.services.clips import Clip, ClipLimits

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5


class ReferenceIntake:
    """One per server: decodes run one at a time process-wide, as in the bot."""

    def __init__(self, limits: ClipLimits | None = None, *, isolated: bool = True) -> None:
        self._intake = ClipIntake(limits or ClipLimits(), isolated=isolated)

    async def decode(self, data: bytes, param: str) -> Clip:
        """The checked mono clip at 24 kHz, or an ApiError whose message is the intake's one sentence."""
        try:
            return await self._intake.decode(data, param)
        except BadAttachment as exc:
            if str(exc) == BUSY_EVERYONE:  # the queue of decodes is full: a retry later succeeds
                raise ApiError(503, "Too many reference clips are being checked right now; retry in a moment.",
                               kind="server_overloaded", code="server_busy",
                               headers={"Retry-After": str(RETRY_AFTER_S)}) from None  # fmt: skip
            raise bad(str(exc), param, "bad_audio") from None

"""The services the cogs call, built once per process by the launcher and handed to `NarratorBot`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot.guild_config import GuildConfig
from bot.identities import IdentityService
from bot.jobs import JobQueue
from bot.renders import RenderService
from bot.settings import Settings
from bot.voices import VoiceService
from bot.worker import InferenceWorker
from db.engine import Database

if TYPE_CHECKING:
    import discord

    from bot.playback import Playback

log = logging.getLogger(__name__)


def worker_devices(device: str) -> list[str]:
    """One inference worker per GPU: `auto` means every visible CUDA device (or the CPU when there is none)."""
    if device != "auto":
        return [device]
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(count)] or ["cpu"]


class Services:
    playback: Playback

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.queue = JobQueue(settings.max_queued_per_user)
        self.workers = [
            InferenceWorker(self.queue, device=d, job_timeout_s=settings.job_timeout_s, name=f"w{i}")
            for i, d in enumerate(worker_devices(settings.device))
        ]
        self.voices = VoiceService(db, settings)
        self.guild_config = GuildConfig(db, settings)
        self.identities = IdentityService(self)
        self.renders = RenderService(self)

    def attach(self, client: discord.Client) -> None:
        from bot.playback import Playback

        self.playback = Playback(client)

    def start_workers(self) -> None:
        for worker in self.workers:
            worker.start()
        log.info("%d inference worker(s): %s", len(self.workers), ", ".join(w.device for w in self.workers))

    async def shutdown(self) -> None:
        """Cancel every job, stop the workers (waiting for their compute threads), leave voice."""
        self.renders.closing = True
        self.queue.cancel_where(lambda job: True)
        for worker in self.workers:
            await worker.close()
        if hasattr(self, "playback"):
            await self.playback.leave_all()

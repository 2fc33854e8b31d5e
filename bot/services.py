"""The services the cogs call, built once per process by the launcher and handed to `NarratorBot`.

GPU memory per worker (one worker per GPU; each loads only the checkpoints its jobs need, in bf16). Estimates from
parameter counts (talker + code predictor + speaker encoder, plus the 114 M-parameter codec decoder) and the
448 MiB KV cache at 4096 positions; activations and the CUDA context add roughly 1 GiB. Not yet measured on a GPU.

| jobs served                                   | checkpoints loaded                  | 1.7B models | 0.6B models |
|-----------------------------------------------|-------------------------------------|-------------|-------------|
| /say with preset or fine-tuned voices         | CustomVoice                         | ~5.5 GiB    | ~3.5 GiB    |
| + cloned/designed voices (drift guard), clone | + Base (speaker encoder)            | ~9.5 GiB    | ~5.5 GiB    |
| + /voice design, /voices design               | + VoiceDesign                       | ~13.5 GiB   | ~7.5 GiB    |
"""

from __future__ import annotations

import logging
import sys
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


def reserve_a_core_for_voice() -> None:
    """On CPU inference, leave one core to the event loop and the voice player thread: a starved player sends its
    20 ms packets late and then in bursts."""
    import os

    import torch

    cores = os.cpu_count() or 1
    if cores > 1 and torch.get_num_threads() > cores - 1:
        torch.set_num_threads(cores - 1)
        log.info("CPU inference: torch uses %d of %d cores, one is kept for voice", cores - 1, cores)


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
        # The model's Python frame loop holds the GIL between torch calls; hand it over every 1 ms (default 5 ms)
        # so the voice player thread sends each 20 ms packet on time.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        if any(w.device == "cpu" for w in self.workers):
            reserve_a_core_for_voice()
        for worker in self.workers:
            worker.start()
        log.info("%d inference worker(s): %s", len(self.workers), ", ".join(w.device for w in self.workers))

    async def shutdown(self) -> None:
        """Cancel every job, stop the workers (waiting for their compute threads), leave voice."""
        self.renders.closing = True
        self.queue.cancel_where(lambda job: True)
        for worker in self.workers:
            await worker.close()
        await self.renders.drain(timeout=2.0)
        if hasattr(self, "playback"):
            await self.playback.leave_all()

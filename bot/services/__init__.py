"""The services the cogs call (say, voice library, voice creation, guild config, chat narration, pronunciation
dictionary), and `Services`, the record of them that `bot.app.build_services` fills in and the bot hands to its
cogs."""

from __future__ import annotations

from dataclasses import dataclass

from bot.jobs.queue import JobQueue
from bot.jobs.worker import InferenceWorker, start_workers
from bot.services.chat import ChatService
from bot.services.chat_config import ChatConfig
from bot.services.consent import ConsentService
from bot.services.creation import VoiceCreation
from bot.services.guild_config import GuildConfig
from bot.services.library import VoiceLibrary
from bot.services.permissions import Permissions
from bot.services.pronunciation import PronunciationService
from bot.services.retention import Retention
from bot.services.say import SayService
from bot.settings import Settings
from bot.voice.connections import Playback
from db.engine import Database


@dataclass
class Services:
    """What the cogs and the bot reach; built once by `build_services`."""

    settings: Settings
    db: Database
    queue: JobQueue
    workers: list[InferenceWorker]
    playback: Playback
    library: VoiceLibrary
    guild_config: GuildConfig
    creation: VoiceCreation
    say: SayService
    consent: ConsentService
    permissions: Permissions
    retention: Retention
    chat_config: ChatConfig
    dictionary: PronunciationService
    chat: ChatService

    async def start(self) -> None:
        """Load and warm up every worker's engine, then start taking jobs."""
        for worker in self.workers:
            await worker.start_engine()
        start_workers(self.workers)

    async def shutdown(self) -> None:
        """Cancel every job, stop the workers (waiting for their compute threads), leave voice, close the engines."""
        self.say.closing = True
        await self.chat.close()
        self.queue.cancel_where(lambda job: True)
        for worker in self.workers:
            await worker.close()
        await self.say.drain(timeout=2.0)
        await self.playback.leave_all()
        for worker in self.workers:
            if worker.narrator is not None:
                worker.narrator.engine.close()

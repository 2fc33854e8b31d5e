"""The composition root: `open_bot`, the one way to build a ready-to-start bot (used by `narrator run` and the e2e
tests). Every service is built here with its collaborators passed explicitly.

Contract of `open_bot` (keep it stable; tests/e2e rely on it):

    async with open_bot(settings, **client_options) as bot:   # bot: NarratorBot, not yet logged in
        await bot.start(token)                                 # or bot.login + bot.connect

- On enter: opens the database at `settings.database_url` (creating the folder, applying the Alembic migrations,
  WAL mode), marks renders left unfinished by a previous process as `interrupted` (their owners are told once the
  bot is ready), builds one engine per device and loads + warms up every checkpoint it will need
  (`settings.custom_voice_model`, `base_model`, `voice_design_model`), so the first /say pays no load time and a
  broken checkpoint or device stops start-up (EngineError) before anything logs in; then builds the services and
  the `NarratorBot`.
- `client_options` go to `discord.ext.commands.Bot` (e.g. `connector=aiohttp.TCPConnector(ssl=False)`,
  `guild_ready_timeout=0.05`); `sync_commands=False` skips the dev-guild sync.
- On exit: cancels every job, stops the workers, leaves voice, closes the Discord session, the engines and the
  database. A render still running then stays `running` in the database; the next `open_bot` marks it
  `interrupted` and, once ready, posts a notice mentioning its owner in the text channel the /say came from.

What tests can rely on: a master's JSON sidecar names each identity by `voice-<voices.id>` for stored voices (a
preset default narrator gets a random id); `bot.services` holds the services (`say`, `library`, `creation`,
`guild_config`, `queue`, `workers`, `playback`, `consent`, `permissions`, `retention`, `chat_config`,
`dictionary`, `chat`); `bot.services.playback.source(guild_id)` is the guild's live
`PCMStreamSource` (None before the first audio).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from bot.client import NarratorBot, bot_for
from bot.engine.local import LocalEngine
from bot.engine.options import EngineOptions, engine_devices
from bot.engine.protocol import Engine
from bot.jobs.queue import JobQueue
from bot.jobs.worker import InferenceWorker
from bot.narration.identity import DriftGuard
from bot.narration.narrator import Narrator
from bot.services import Services
from bot.services.chat import ChatService
from bot.services.chat_config import ChatConfig
from bot.services.clip_intake import ClipIntake
from bot.services.clips import ClipLimits
from bot.services.consent import ConsentService
from bot.services.creation import VoiceCreation
from bot.services.guild_config import GuildConfig
from bot.services.library import VoiceLibrary
from bot.services.permissions import Permissions
from bot.services.pronunciation import PronunciationService
from bot.services.render_rows import mark_interrupted
from bot.services.retention import Retention
from bot.services.say import SayService
from bot.settings import Settings
from bot.voice.connections import Playback, VoiceLimits
from db.engine import Database, open_database

log = logging.getLogger(__name__)


def build_engines(settings: Settings) -> list[Engine]:
    """NARRATOR_ENGINE_URLS set: one RemoteEngine (NARRATOR_REMOTE_WORKERS renders at once: its worker's slots);
    else one local engine per device (NARRATOR_DEVICE=auto: every visible GPU, else the CPU)."""
    if settings.engine_urls:
        from bot.engine.remote import RemoteEngine, RemoteOptions

        options = RemoteOptions(settings.engine_urls, settings.engine_kind, settings.engine_api_key,
                                settings.engine_timeout_s, max_streams=settings.remote_workers)  # fmt: skip
        return [RemoteEngine(options)]
    options = EngineOptions.from_settings(settings)
    return [LocalEngine(options.on(device)) for device in engine_devices(settings.device)]


def build_workers(settings: Settings, queue: JobQueue, engines: Sequence[Engine]) -> list[InferenceWorker]:
    workers = []
    for index, engine in enumerate(engines):
        worker = InferenceWorker(
            queue,
            device=engine.describe()["device"],
            job_timeout_s=settings.job_timeout_s,
            name=f"w{index}",
            slots=engine.capabilities.max_streams,
            stuck_step_s=settings.stuck_step_s,
        )
        worker.bind(
            Narrator(
                engine,
                outputs_dir=settings.outputs_dir,
                compute=worker.compute,
                eta_path=settings.data_dir / "eta.json",
                guard=DriftGuard(**settings.drift_guard_options()),
            )
        )
        workers.append(worker)
    return workers


def build_services(settings: Settings, db: Database, engines: Sequence[Engine], playback: Playback) -> Services:
    queue = JobQueue(
        settings.max_queued_per_user,
        max_queued_per_guild=settings.max_queued_per_guild,
        max_queued_total=settings.max_queued_total,
    )
    workers = build_workers(settings, queue, engines)
    library = VoiceLibrary(db, settings, engines[0])
    guild_config = GuildConfig(db, settings)
    dictionary = PronunciationService(db)
    say = SayService(settings, db, queue, workers, library, guild_config, playback, dictionary)
    chat_config = ChatConfig(db)
    return Services(
        settings=settings,
        db=db,
        queue=queue,
        workers=workers,
        playback=playback,
        library=library,
        guild_config=guild_config,
        creation=VoiceCreation(
            settings, library, queue, clips=ClipIntake(ClipLimits(max_seconds=settings.max_reference_seconds))
        ),
        say=say,
        consent=ConsentService(db, settings, library),
        permissions=Permissions(guild_config, queue, playback, say),
        retention=Retention(db, settings),
        chat_config=chat_config,
        dictionary=dictionary,
        chat=ChatService(chat_config, dictionary, say, library, queue, playback),
    )


@contextlib.asynccontextmanager
async def open_bot(
    settings: Settings, *, engines: Sequence[Engine] | None = None, **client_options: Any
) -> AsyncIterator[NarratorBot]:
    db = await open_database(settings.database_url)
    try:
        await mark_interrupted(db)
        settings.outputs_dir.mkdir(parents=True, exist_ok=True)
        bot = bot_for(settings, **client_options)
        services = build_services(
            settings, db, engines or build_engines(settings), Playback(bot, VoiceLimits.of(settings))
        )
        services.retention.sweep_at_start()  # before any render can write: what a killed run left
        bot.services = services
        await services.start()
        try:
            yield bot
        finally:
            if not bot.is_closed():
                await bot.close()
            else:
                await services.shutdown()
    finally:
        await db.close()

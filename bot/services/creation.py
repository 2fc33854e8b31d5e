"""Creating voices that need the model: cloning from a reference clip and designing from a description.

Both validate everything they can first (name, consent, size, the clip itself via `bot.services.clip_intake`), then run
the model part as a job on an inference worker (the only owner of the GPU), then store the voice with its locked
timbre (an x-vector from the Base checkpoint's speaker encoder).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

import numpy as np

from bot.errors import BadAttachment, UserError
from bot.jobs.queue import Job
from bot.narration import planning as narrate
from bot.narration.identity import vector_bytes
from bot.services.clip_intake import ClipIntake
from bot.services.clips import ClipLimits
from db import repo

if TYPE_CHECKING:
    from bot.jobs.queue import JobQueue
    from bot.services.library import VoiceLibrary
    from bot.settings import Settings

log = logging.getLogger(__name__)

AUDIO_HINT = "Upload a WAV, FLAC or OGG recording of one person speaking clearly"


class VoiceCreation:
    def __init__(
        self, settings: Settings, library: VoiceLibrary, queue: JobQueue, clips: ClipIntake | None = None
    ) -> None:
        self.settings = settings
        self.library = library
        self.queue = queue
        # one intake per process: pass the shared one; a private one still serialises this service's own decodes
        self.clips = clips or ClipIntake(ClipLimits(max_seconds=settings.max_reference_seconds))

    # -- cloning -----------------------------------------------------------------------------------------------------

    def check_upload(self, size: int, filename: str) -> None:
        """Cheap checks before downloading an attachment."""
        limit = self.settings.max_upload_bytes
        if size > limit:
            raise BadAttachment(
                f"`{filename[:60]}` is {size / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB. "
                f"{AUDIO_HINT}, at most {self.settings.max_reference_seconds:g} s long."
            )
        if size == 0:
            raise BadAttachment(f"`{filename[:60]}` is empty. {AUDIO_HINT}.")

    async def decode_reference(self, data: bytes, filename: str, uploader: int | None = None) -> tuple[np.ndarray, int]:
        """The checked clip as float32 mono at 24 kHz and its rate; BadAttachment (one sentence) when refused."""
        if len(data) > self.settings.max_upload_bytes:
            self.check_upload(len(data), filename)
        clip = await self.clips.decode(data, filename, uploader)
        return clip.audio, clip.sample_rate

    async def clone(
        self,
        guild_id: int,
        admin_id: int,
        name: str,
        data: bytes,
        filename: str,
        transcript: str,
        consent: bool,
        speaker_id: int | None = None,
    ) -> repo.Voice:
        """Clone a library voice. `speaker_id`: the member whose voice it is; unless that is the registrant
        (None means the registrant: "this is my voice"), the voice stays pending until they confirm it
        (bot.services.consent)."""
        if not consent:
            raise UserError("Register a voice only with the speaker's consent: set `consent` to True to confirm it.")
        if not transcript.strip():
            raise UserError("Give the `transcript`: the exact words spoken in the clip.")
        name = await self.library.ensure_free(guild_id, admin_id, "guild", name)
        audio, sr = await self.decode_reference(data, filename, admin_id)
        cloned = await self._on_worker(
            guild_id, admin_id, "clone", lambda w: narrate.clone(w.narrator, audio, sr, transcript, name)
        )
        clip = self.library.clip_path(guild_id)
        await asyncio.to_thread(_write_wav_atomic, clip, cloned.clip, cloned.sample_rate)
        new = repo.NewVoice(
            guild_id=guild_id,
            owner_id=admin_id,
            scope="guild",
            kind="cloned",
            name=name,
            model=self.settings.custom_voice_model,
            ref_clip_path=str(clip),
            transcript=transcript.strip(),
            consent=speaker_id in (None, admin_id),
            timbre=vector_bytes(np.asarray(cloned.identity.vector, dtype=np.float32)),
        )
        try:
            if speaker_id is None or speaker_id == admin_id:
                return await self.library.add_own_clone(new)
            return await self.library.add_pending_clone(new, speaker_id)
        except BaseException:
            self.library.delete_clips([str(clip)])  # no voice row points at it
            raise

    # -- designing ---------------------------------------------------------------------------------------------------

    async def design(self, guild_id: int, user_id: int, name: str, description: str, *, personal: bool) -> repo.Voice:
        description = description.strip()
        if not 3 <= len(description) <= 500:
            raise UserError("Describe the voice in 3 to 500 characters, e.g. `a warm, low male voice, calm and slow`.")
        scope = "personal" if personal else "guild"
        name = await self.library.ensure_free(guild_id, user_id, scope, name)
        if personal:
            await self.library.check_personal_room(user_id)
        designed = await self._on_worker(
            guild_id, user_id, "design", lambda w: narrate.design(w.narrator, description, name)
        )
        clip = self.library.clip_path(guild_id)
        await asyncio.to_thread(_write_wav_atomic, clip, designed.clip, designed.sample_rate)
        new = repo.NewVoice(
            guild_id=guild_id,
            owner_id=user_id,
            scope=scope,
            kind="designed",
            name=name,
            model=self.settings.custom_voice_model,
            description=description,
            ref_clip_path=str(clip),
            timbre=vector_bytes(np.asarray(designed.identity.vector, dtype=np.float32)),
            seed=designed.identity.seed,
        )
        return await self.library.add(new, lock_for=user_id if personal else None)

    # -- the worker round trip ---------------------------------------------------------------------------------------

    async def _on_worker(self, guild_id: int, user_id: int, label: str, step):
        async def work(job: Job, worker) -> object:
            return await step(worker)

        job = Job(guild_id, user_id, work, label=label)
        self.queue.submit(job)
        try:
            return await job.done
        except asyncio.CancelledError:
            if job.state == "cancelled":
                raise UserError("That was cancelled (by /stop or a shutdown); run the command again.") from None
            raise


def _write_wav_atomic(path, audio: np.ndarray, sample_rate: int) -> None:
    import soundfile as sf

    tmp = path.with_suffix(".tmp.wav")
    sf.write(str(tmp), audio, sample_rate, subtype="PCM_16")
    with open(tmp, "rb+") as f:  # on disk before the rename makes it the clip (a crash leaves old or new, whole)
        os.fsync(f.fileno())
    os.replace(tmp, path)

"""`narrator voices clone NAME --audio FILE --transcript TEXT --consent [--guild ID]`: a cloned voice in the library.

The clip goes through the same intake as a Discord upload (`bot.services.clips`); the name, consent and the clip
are checked before any model loads. The x-vector comes from the Base checkpoint's speaker encoder and renders with
the CustomVoice checkpoint, exactly as `/voices clone` stores it. The operator vouches for the speaker's consent
with `--consent`; without it nothing is done.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from bot.cli import checks
from bot.cli.checks import InputError
from bot.errors import UserError
from bot.narration.identity import vector_bytes
from bot.services.library import check_name
from bot.settings import Settings
from db import repo
from db.engine import open_database

log = logging.getLogger(__name__)

NO_CONSENT = (
    "cloning a voice needs the speaker's consent: add --consent to confirm they agreed to have their voice cloned"
)


def main(args: argparse.Namespace, settings: Settings) -> int:
    try:
        if not args.consent:
            raise InputError(NO_CONSENT)
        name = check_name(args.name)
        clip = checks.reference_clip(Path(args.audio), args.transcript, settings, "--audio")
        checks.writable_folder(settings.data_dir / "voices", "NARRATOR_DATA_DIR")
        checks.device(settings)  # EngineError (one line from bot.cli) before any model loads
        voice = asyncio.run(clone_into_library(args, settings, name, clip))
    except (InputError, UserError, ValueError) as exc:
        sys.stderr.write(f"narrator voices clone: {str(exc).replace('`', '')}\n")
        return 2
    where = "all guilds" if voice.guild_id == repo.GLOBAL_GUILD else f"guild {voice.guild_id}"
    sys.stdout.write(f"cloned {voice.name!r} (id {voice.id}, {where}) rendering with {voice.model}\n")
    return 0


async def clone_into_library(args: argparse.Namespace, settings: Settings, name: str, clip) -> repo.Voice:
    guild = args.guild if args.guild is not None else repo.GLOBAL_GUILD
    db = await open_database(settings.database_url)
    try:
        async with db.sessions() as s:
            if await repo.library_voice(s, guild, name) is not None:
                raise InputError(f"a voice called {name!r} already exists there; pick another NAME")
        model = args.model or settings.custom_voice_model
        lock = await _clone(args, settings, model, name, clip)
        path = settings.data_dir / "voices" / str(int(guild)) / f"{os.urandom(16).hex()}.wav"
        await asyncio.to_thread(_write_wav, path, lock.clip, lock.sample_rate)
        new = repo.NewVoice(guild_id=guild, owner_id=0, scope="guild", kind="cloned", name=name, model=model,
                            ref_clip_path=str(path), transcript=args.transcript.strip(), consent=True,
                            timbre=vector_bytes(np.asarray(lock.identity.vector, dtype=np.float32)))  # fmt: skip
        async with db.sessions.begin() as s:
            return await repo.add_voice(s, new)
    finally:
        await db.close()


async def _clone(args: argparse.Namespace, settings: Settings, model: str, name: str, clip):
    from bot.engine.local import LocalEngine
    from bot.engine.options import EngineOptions
    from bot.narration.narrator import Narrator

    options = replace(EngineOptions.from_settings(settings), custom_voice_model=model,
                      base_model=args.base_model or settings.base_model, design_model=None, warm_up=False)  # fmt: skip
    narrator = Narrator(LocalEngine(options), outputs_dir=None)
    try:
        return await narrator.clone_voice(clip.audio, clip.sample_rate, args.transcript, name)
    finally:
        narrator.close()
        narrator.engine.close()


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.wav")
    sf.write(str(tmp), audio, sample_rate, subtype="PCM_16")
    os.replace(tmp, path)

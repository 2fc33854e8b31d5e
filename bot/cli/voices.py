"""`narrator voices import DIR --name NAME [--guild ID] [--speaker S]`, `voices list`, `voices speakers [--model M]`
and `voices clone NAME --audio FILE --transcript TEXT --consent` (bot/cli/voice_clone.py).

Import checks that a fine-tuned checkpoint (written by `finetuning/`) really loads with `qwen_tts` as a CustomVoice
model, picks its speaker (the only one, or `--speaker`, or the one called like `--name`), and registers a
`finetuned` voice that renders with that checkpoint. Its timbre is the speaker's codec-embedding row, kept so the
identity stays locked even if the checkpoint folder is later replaced. The operator vouches for consent by
importing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from bot.errors import UserError
from bot.narration.identity import vector_bytes
from bot.services.library import check_name
from bot.settings import Settings
from db import repo
from db.engine import open_database

log = logging.getLogger(__name__)


class CheckpointImportError(ValueError):
    """The checkpoint cannot be imported; the message says why and what to do."""


def inspect_checkpoint(directory: Path, wanted_speaker: str | None, name: str) -> tuple[str, bytes]:
    """Load the checkpoint on the CPU; returns (speaker, timbre bytes). Raises CheckpointImportError."""
    from bot.engine.local import LocalEngine
    from bot.engine.options import EngineOptions
    from bot.engine.protocol import EngineError

    if not (directory / "config.json").is_file():
        raise CheckpointImportError(f"{directory} has no config.json: point at the folder the fine-tuning run wrote")
    engine = LocalEngine(EngineOptions(str(directory), device="cpu", dtype="float32", speed_path=False, warm_up=False))
    try:
        info = engine.checkpoint()
        if info.model_type != "custom_voice":
            raise CheckpointImportError(
                f"{directory} is a {info.model_type} checkpoint; a fine-tuned voice must be custom_voice"
            )
        speaker = _pick_speaker(list(info.speakers), wanted_speaker, name)
        return speaker, vector_bytes(engine.speaker_row(str(directory), speaker))
    except EngineError as exc:
        raise CheckpointImportError(f"{directory} does not load as a Qwen3-TTS checkpoint: {exc}") from exc
    finally:
        engine.close()


def _pick_speaker(speakers: list[str], wanted: str | None, name: str) -> str:
    by_lower = {s.lower(): s for s in speakers}
    if wanted:
        if wanted.lower() not in by_lower:
            raise CheckpointImportError(f"speaker {wanted!r} is not in the checkpoint; it has: {', '.join(speakers)}")
        return by_lower[wanted.lower()]
    if len(speakers) == 1:
        return speakers[0]
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    raise CheckpointImportError(
        f"the checkpoint has several speakers ({', '.join(speakers)}); choose one with --speaker"
    )


async def import_voice(settings: Settings, directory: Path, name: str, guild_id: int | None, speaker: str | None):
    name = check_name(name)
    speaker, timbre = await asyncio.to_thread(inspect_checkpoint, directory, speaker, name)
    db = await open_database(settings.database_url)
    try:
        guild = guild_id if guild_id is not None else repo.GLOBAL_GUILD
        async with db.sessions.begin() as s:
            if await repo.library_voice(s, guild, name) is not None:
                raise CheckpointImportError(f"a voice called {name!r} already exists there; pick another --name")
            return await repo.add_voice(
                s,
                repo.NewVoice(
                    guild_id=guild,
                    owner_id=0,
                    scope="guild",
                    kind="finetuned",
                    name=name,
                    model=str(directory.resolve()),
                    speaker=speaker,
                    consent=True,
                    timbre=timbre,
                ),
            )
    finally:
        await db.close()


async def list_voices(settings: Settings) -> list[repo.Voice]:
    db = await open_database(settings.database_url)
    try:
        async with db.sessions() as s:
            return await repo.all_voices(s)
    finally:
        await db.close()


LIST_HEADER = ("id", "name", "kind", "scope", "where", "model")


def list_rows(voices: list[repo.Voice]) -> list[tuple[str, ...]]:
    rows = []
    for v in voices:
        where = "all guilds" if v.guild_id == repo.GLOBAL_GUILD else f"guild {v.guild_id}"
        rows.append((str(v.id), v.name, v.kind, v.scope, where, v.model or "-"))
    return rows


def print_list(settings: Settings) -> int:
    rows = list_rows(asyncio.run(list_voices(settings)))
    if not rows:
        sys.stdout.write("no voices yet: add one with `narrator voices clone` or `narrator voices import`\n")
        return 0
    for row in (LIST_HEADER, *rows):
        sys.stdout.write("\t".join(row) + "\n")
    return 0


def print_speakers(args: argparse.Namespace, settings: Settings) -> int:
    """A checkpoint's preset speakers and languages, read through the Engine seam (`checkpoint()`)."""
    from dataclasses import replace

    from bot.cli.checks import device
    from bot.engine.local import LocalEngine
    from bot.engine.options import EngineOptions

    device(settings)
    model = args.model or settings.custom_voice_model
    options = replace(EngineOptions.from_settings(settings), custom_voice_model=model, base_model=None,
                      design_model=None, warm_up=False, speed_path=False)  # fmt: skip
    engine = LocalEngine(options)
    try:
        info = engine.checkpoint(model)
    finally:
        engine.close()
    sys.stdout.write(f"{info.model} ({info.model_type})\n")
    sys.stdout.write(f"speakers: {', '.join(info.speakers) or 'none (a ' + info.model_type + ' checkpoint)'}\n")
    sys.stdout.write(f"languages: {', '.join(info.languages)}\n")
    return 0


def main(args: argparse.Namespace, settings: Settings) -> int:
    if args.voices_command == "list":
        return print_list(settings)
    if args.voices_command == "speakers":
        return print_speakers(args, settings)
    if args.voices_command == "clone":
        from bot.cli.voice_clone import main as clone_main

        return clone_main(args, settings)
    try:
        voice = asyncio.run(
            import_voice(settings, Path(args.directory), args.name, args.guild, getattr(args, "speaker", None))
        )
    except (CheckpointImportError, UserError, ValueError) as exc:
        sys.stderr.write(f"narrator voices import: {exc}\n")
        return 2
    sys.stdout.write(f"imported {voice.name!r} (speaker {voice.speaker}, id {voice.id}) from {voice.model}\n")
    return 0

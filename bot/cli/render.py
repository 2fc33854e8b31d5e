"""`narrator render "SCRIPT" --out FILE [--model M] [--speaker S | --design "..." | --voice NAME | --clone FILE]`.

No Discord needed. The narrator's voice is a preset speaker (`--speaker`, default: the checkpoint's first), a voice
designed and locked on the spot (`--design`, needs a VoiceDesign and a Base checkpoint), a voice cloned from a clip
on the spot (`--clone FILE --transcript TEXT`, needs a Base checkpoint; nothing is stored), or a voice from the bot's
library (`--voice`, rendered with the checkpoint it names). `[@name]` tags resolve to preset speakers of the
checkpoint first, then to library voices. The master and its JSON sidecar stay under the outputs folder; `--out`
gets a copy as WAV, FLAC or Opus (by its suffix). The drift guard runs when a Base checkpoint is given
(`--base-model`, or NARRATOR_BASE_MODEL with `--design` / `--clone`).

Everything that can be checked without a model is checked first (script, output paths, the clip, the device); the
language is checked against the checkpoint right after it loads, before anything is generated.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from bot.cli import checks
from bot.cli.checks import InputError
from bot.cli.progress import CommandProgress
from bot.errors import UserError
from bot.narration.identity import DriftGuard, Identity
from bot.narration.masters import export_master, format_for_suffix
from bot.narration.script import Script, ScriptError, parse_script
from bot.settings import Settings

log = logging.getLogger(__name__)


class RenderError(InputError):
    """A problem with the command line the user can fix; the message says how."""


def main(args: argparse.Namespace, settings: Settings) -> int:
    try:
        checks.script_length(args.script, settings)
        script = parse_script(args.script, max_chars=settings.max_script_chars)
        out = Path(args.out)
        checks.writable_file(out, "--out")
        fmt = format_for_suffix(out)
        checks.writable_folder(settings.outputs_dir, "NARRATOR_OUTPUTS_DIR")
        if args.transcript and not args.clone:
            raise RenderError("--transcript goes with --clone FILE (the words spoken in that clip)")
        clip = checks.reference_clip(Path(args.clone), args.transcript, settings, "--clone") if args.clone else None
        checks.device(settings)  # EngineError (one line from bot.cli) before any model loads
        return asyncio.run(_render(args, settings, script, out, fmt, clip))
    except (ScriptError, InputError, UserError, ValueError) as exc:
        sys.stderr.write(f"narrator render: {exc}\n")
        return 2


def build_narrator(args: argparse.Namespace, settings: Settings, model: str | None = None):
    """A narrator whose engine knows only the checkpoints this render uses (the sidecar lists exactly those)."""
    from bot.engine.local import LocalEngine
    from bot.engine.options import EngineOptions
    from bot.narration.narrator import Narrator

    needs_encoder = bool(args.design or getattr(args, "clone", None))
    base = args.base_model or (settings.base_model if needs_encoder else None)
    options = replace(
        EngineOptions.from_settings(settings),
        custom_voice_model=args.model or model or settings.custom_voice_model,
        base_model=base,
        design_model=(args.design_model or settings.voice_design_model) if args.design else None,
        warm_up=False,  # one render: loading on first use is all the warm-up it needs
    )
    engine = LocalEngine(options)
    guard = DriftGuard(**settings.drift_guard_options(), enabled=base is not None)
    return Narrator(engine, outputs_dir=settings.outputs_dir, eta_path=settings.data_dir / "eta.json", guard=guard)


async def _render(args: argparse.Namespace, settings: Settings, script: Script, out: Path, fmt: str, clip) -> int:
    library_voice = await _library_voice(settings, args.voice) if args.voice else None
    narrator = build_narrator(args, settings, library_voice.model if library_voice is not None else None)
    progress = CommandProgress(narrator, script, _mode(args))
    try:
        async with progress.stage("loading the model"):
            await check_language(narrator, args.language, [narrator.engine.custom_voice_model])
        voices = await _voices(narrator, args, settings, script, library_voice, clip, progress)
        await check_language(narrator, args.language, [identity.model for identity in voices.values()])
        finished = await progress.render(script, voices, args.max_frames)
    finally:
        progress.close()
        narrator.close()
    if finished is None:
        sys.stderr.write("narrator render: cancelled\n")
        return 130
    await asyncio.to_thread(_deliver, finished.master_path, out, fmt)
    scores = ", ".join("-" if s is None else f"{s:.2f}" for s in finished.lock_scores)
    log.info("wrote %s: %.1f s of audio in %.1f s (lock scores: %s; master %s)", out, finished.audio_seconds,
             progress.elapsed_s(), scores, finished.master_path)  # fmt: skip
    return 0


def _mode(args: argparse.Namespace) -> str:
    return next((m for m in ("design", "clone", "voice") if getattr(args, m, None)), "preset")


async def check_language(narrator, language: str, models: list[str]) -> None:
    """Load each checkpoint (off the event loop) and check `--language` against its languages; no generation yet."""
    for model in dict.fromkeys(models):
        info = await asyncio.to_thread(narrator.engine.checkpoint, model)
        if language.lower() != "auto" and language.lower() not in info.languages:
            raise RenderError(
                f"--language {language} is not supported by {model}; use one of: {', '.join(info.languages)}"
            )


def _deliver(master: Path, out: Path, fmt: str) -> None:
    if fmt == "wav":
        shutil.copyfile(master, out)
    else:
        export_master(master, fmt, out)


async def _voices(narrator, args, settings, script, library_voice, clip, progress) -> dict[str | None, Identity]:
    from bot.narration.planning import identity_of  # the one mapping from stored voices to identities

    language, seed = args.language, args.seed
    if args.design:
        async with progress.stage("designing the voice"):
            lock = await narrator.design_voice(args.design, "designed", language=language, seed=seed)
        narrator_voice = lock.identity
    elif clip is not None:
        async with progress.stage("cloning the voice"):
            lock = await narrator.clone_voice(clip.audio, clip.sample_rate, args.transcript, "cloned",
                                              language=language, seed=seed, ref_clip=str(args.clone))  # fmt: skip
        narrator_voice = lock.identity
    elif library_voice is not None:
        narrator_voice = identity_of(library_voice, narrator.engine.custom_voice_model)
    else:
        speaker = args.speaker or next(iter(await narrator.speakers()), None)
        if speaker is None:
            raise RenderError("this checkpoint has no preset speakers: use --voice NAME, --clone FILE or --design")
        narrator_voice = await narrator.preset_voice(speaker, language=language, seed=seed)
    voices: dict[str | None, Identity] = {None: narrator_voice}
    presets = await narrator.speakers() if script.voices else []
    for name in script.voices:
        if name in presets:
            voices[name] = await narrator.preset_voice(name, language=language, seed=seed)
        else:
            voices[name] = identity_of(await _library_voice(settings, name), narrator.engine.custom_voice_model)
    return voices


async def _library_voice(settings: Settings, name: str):
    """A voice of the bot's library (any guild; an operator-wide voice wins)."""
    from db import repo
    from db.engine import open_database

    db = await open_database(settings.database_url)
    try:
        async with db.sessions() as s:
            found = [v for v in await repo.all_voices(s) if v.name.lower() == name.strip().lower()]
    finally:
        await db.close()
    if not found:
        raise RenderError(f"there is no voice called {name!r} in the library; see `narrator voices list`")
    found.sort(key=lambda v: v.guild_id != repo.GLOBAL_GUILD)
    if len(found) > 1:
        log.warning("%d voices are called %r; using voice %d (guild %d)", len(found), name, found[0].id,
                    found[0].guild_id)  # fmt: skip
    return found[0]

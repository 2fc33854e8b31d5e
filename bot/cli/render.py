"""`narrator render "SCRIPT" --out FILE [--model M] [--speaker S | --design "..." | --voice NAME]`: no Discord needed.

The narrator's voice is a preset speaker (`--speaker`, default: the checkpoint's first), a voice designed and locked
on the spot (`--design`, needs a VoiceDesign and a Base checkpoint), or a voice from the bot's library (`--voice`).
`[@name]` tags resolve to preset speakers of the checkpoint first, then to library voices. The master and its JSON
sidecar stay under the outputs folder; `--out` gets a copy as WAV, FLAC or Opus (by its suffix). The drift guard
runs when a Base checkpoint is given (`--base-model`, or NARRATOR_BASE_MODEL with `--design`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from bot.narration.identity import DriftGuard, Identity
from bot.narration.masters import export_master, format_for_suffix
from bot.narration.script import Script, ScriptError, parse_script
from bot.settings import Settings

log = logging.getLogger(__name__)


class RenderError(ValueError):
    """A problem with the command line the user can fix; the message says how."""


def main(args: argparse.Namespace, settings: Settings) -> int:
    try:
        script = parse_script(args.script, max_chars=settings.max_script_chars)
        out = Path(args.out)
        fmt = format_for_suffix(out)
        if not out.parent.is_dir():
            raise RenderError(f"the folder of --out does not exist: {out.parent}")
        return asyncio.run(_render(args, settings, script, out, fmt))
    except (ScriptError, RenderError, ValueError) as exc:
        sys.stderr.write(f"narrator render: {exc}\n")
        return 2


def build_narrator(args: argparse.Namespace, settings: Settings):
    from bot.engine.local import LocalEngine
    from bot.engine.options import EngineOptions
    from bot.narration.narrator import Narrator

    base = args.base_model or (settings.base_model if args.design else None)
    options = replace(
        EngineOptions.from_settings(settings),
        custom_voice_model=args.model or settings.custom_voice_model,
        base_model=base,
        design_model=args.design_model or settings.voice_design_model,
        warm_up=False,  # one render: loading on first use is all the warm-up it needs
    )
    engine = LocalEngine(options)
    guard = DriftGuard(**settings.drift_guard_options(), enabled=base is not None)
    return Narrator(engine, outputs_dir=settings.outputs_dir, eta_path=settings.data_dir / "eta.json", guard=guard)


async def _render(args: argparse.Namespace, settings: Settings, script: Script, out: Path, fmt: str) -> int:
    narrator = build_narrator(args, settings)
    try:
        voices = await _voices(narrator, args, settings, script)
        finished = await _run(narrator, script, voices, args.max_frames)
    finally:
        narrator.close()
    if finished is None:
        sys.stderr.write("narrator render: cancelled\n")
        return 130
    await asyncio.to_thread(_deliver, finished.master_path, out, fmt)
    scores = ", ".join("-" if s is None else f"{s:.2f}" for s in finished.lock_scores)
    log.info("wrote %s: %.1f s of audio in %.1f s (lock scores: %s; master %s)", out, finished.audio_seconds,
             finished.timings["total_s"], scores, finished.master_path)  # fmt: skip
    return 0


def _deliver(master: Path, out: Path, fmt: str) -> None:
    if fmt == "wav":
        shutil.copyfile(master, out)
    else:
        export_master(master, fmt, out)


async def _voices(narrator, args: argparse.Namespace, settings: Settings, script: Script) -> dict[str | None, Identity]:
    language, seed = args.language, args.seed
    if args.design:
        lock = await narrator.design_voice(args.design, "designed", language=language, seed=seed)
        narrator_voice = lock.identity
    elif args.voice:
        narrator_voice = await _library_identity(settings, args.voice)
    else:
        speaker = args.speaker or next(iter(await narrator.speakers()), None)
        if speaker is None:
            raise RenderError("this checkpoint has no preset speakers: use --voice NAME or --design DESCRIPTION")
        narrator_voice = await narrator.preset_voice(speaker, language=language, seed=seed)
    voices: dict[str | None, Identity] = {None: narrator_voice}
    presets = await narrator.speakers()
    for name in script.voices:
        if name in presets:
            voices[name] = await narrator.preset_voice(name, language=language, seed=seed)
        else:
            voices[name] = await _library_identity(settings, name)
    return voices


async def _library_identity(settings: Settings, name: str) -> Identity:
    """A voice of the bot's library (any guild; an operator-wide voice wins), as a locked identity."""
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
    from bot.narration.planning import identity_of  # the one mapping from stored voices to identities

    return identity_of(found[0], settings)


async def _run(narrator, script: Script, voices: dict[str | None, Identity], max_frames: int | None):
    from bot.narration import AudioChunk, Finished, Progress

    bar = _progress_bar(len(script.items))
    finished, audio_s = None, 0.0
    try:
        async for event in narrator.render(script, voices, max_frames=max_frames):
            if isinstance(event, AudioChunk):
                audio_s += len(event.audio) / narrator.engine.audio.sample_rate
            elif isinstance(event, Progress):
                _show(bar, event, audio_s)
            elif isinstance(event, Finished):
                finished = event
    finally:
        if bar is not None:
            if finished is not None:
                bar.n = bar.total
                bar.set_postfix_str(f"{finished.audio_seconds:.1f} s of audio")
            bar.close()
    return finished


def _progress_bar(total: int):
    if not sys.stderr.isatty():
        return None  # log lines instead: a bar in a log file is noise
    from tqdm import tqdm

    return tqdm(total=total, unit="seg", desc="rendering", file=sys.stderr, leave=True)


def _show(bar, event, audio_s: float) -> None:
    eta = "?" if event.eta_s is None else f"{event.eta_s:.1f} s"
    if bar is None:
        log.info("segment %d of %d, %.1f s elapsed, %.1f s of audio, ETA %s", event.segment, event.total,
                 event.elapsed_s, audio_s, eta)  # fmt: skip
        return
    bar.n = event.segment - 1
    bar.set_postfix_str(f"ETA {eta}, {audio_s:.1f} s of audio")
    bar.refresh()

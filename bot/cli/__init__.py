"""The `narrator` console entry point.

Each subcommand's arguments are declared here so `narrator --help` works on a fresh install without importing torch or
discord; the implementation module is imported only when the subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from bot.engine.protocol import EngineError
from bot.settings import Settings, SettingsError
from db.errors import DatabaseUnusable

log = logging.getLogger(__name__)

# subcommand -> "module:function"; the function takes (args, settings) and returns an exit code.
HANDLERS = {
    "run": "bot.cli.run:main",
    "render": "bot.cli.render:main",
    "db": "bot.cli.db:main",
    "voices": "bot.cli.voices:main",
    "invite-url": "bot.cli.invite:main",
    "serve": "bot.cli.serve:main",
}


def positive_int(text: str) -> int:
    """argparse type for counts that must be >= 1 (refused at parse time, before any model loads)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _group(sub: argparse._SubParsersAction, name: str, help: str, dest: str) -> argparse._SubParsersAction:
    """A subcommand that only groups others (`narrator db`, `narrator voices`): alone it prints its usage."""
    p = sub.add_parser(name, help=help)
    p.set_defaults(usage_of=p, group_dest=dest)
    return p.add_subparsers(dest=dest)


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the Discord bot (needs DISCORD_TOKEN)")
    p.add_argument("--no-sync", action="store_true", help="do not sync slash commands to the dev guild at start")


def _add_render(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="render an emotion-tagged script to a WAV file, no Discord needed")
    p.add_argument("script", help='the script, e.g. "[Whispering] Hello. [Pause] [Excited] Hi!"')
    p.add_argument("--model", help="checkpoint folder or hub id (default: NARRATOR_MODEL)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--voice", help="a voice registered in the database")
    who.add_argument("--speaker", help="a preset speaker of a CustomVoice checkpoint")
    who.add_argument("--design", metavar="DESCRIPTION", help="design a voice from a description (VoiceDesign model)")
    who.add_argument("--clone", metavar="FILE", help="clone the voice of a WAV/FLAC/Ogg clip (needs --transcript)")
    p.add_argument("--transcript", help="with --clone: the exact words spoken in the clip")
    p.add_argument("--design-model", help="VoiceDesign checkpoint for --design (default: NARRATOR_DESIGN_MODEL)")
    p.add_argument("--base-model", help="Base checkpoint for the speaker encoder (default: NARRATOR_BASE_MODEL)")
    p.add_argument("--language", default="auto", help="language of the text (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--out", required=True, help="output file (.wav, .flac or .ogg)")
    p.add_argument(
        "--max-frames", type=positive_int, default=None, help="cap on frames per segment (12.5 frames = 1 s)"
    )


def _add_db(sub: argparse._SubParsersAction) -> None:
    dbsub = _group(sub, "db", "database migrations", "db_command")
    dbsub.add_parser("upgrade", help="apply every pending migration")
    dbsub.add_parser("current", help="print the applied revision")


def _add_voices(sub: argparse._SubParsersAction) -> None:
    vsub = _group(sub, "voices", "manage the voice library", "voices_command")
    imp = vsub.add_parser("import", help="import a fine-tuned checkpoint as a voice")
    imp.add_argument("directory", help="checkpoint folder written by finetuning/sft_12hz.py")
    imp.add_argument("--name", required=True, help="voice name in the library")
    imp.add_argument("--guild", type=int, default=None, help="guild id to register it for (default: global)")
    imp.add_argument("--speaker", default=None, help="speaker in the checkpoint (default: its only one)")
    vsub.add_parser("list", help="list the voices in the library")
    clone = vsub.add_parser("clone", help="clone a voice from a reference clip into the library")
    clone.add_argument("name", help="voice name in the library")
    clone.add_argument("--audio", required=True, metavar="FILE", help="WAV, FLAC or Ogg clip of one person speaking")
    clone.add_argument("--transcript", required=True, help="the exact words spoken in the clip")
    clone.add_argument("--consent", action="store_true", help="confirm the speaker agreed to have their voice cloned")
    clone.add_argument("--guild", type=int, default=None, help="guild id to register it for (default: global)")
    clone.add_argument("--model", help="CustomVoice checkpoint that renders it (default: NARRATOR_MODEL)")
    clone.add_argument("--base-model", help="Base checkpoint for the speaker encoder (default: NARRATOR_BASE_MODEL)")
    speakers = vsub.add_parser("speakers", help="list a checkpoint's preset speakers and languages")
    speakers.add_argument("--model", help="checkpoint folder or hub id (default: NARRATOR_MODEL)")


def _add_invite_url(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("invite-url", help="print the link that adds the bot to a server")
    p.add_argument("--application-id", help="the application id (default: read from DISCORD_TOKEN)")


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from bot.cli.serve import add_parser  # argparse only: no torch, no aiohttp

    add_parser(sub)


SUBCOMMANDS = (_add_run, _add_render, _add_db, _add_voices, _add_invite_url, _add_serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="narrator", description="Discord voice narrator powered by Qwen3-TTS.")
    parser.add_argument("--env-file", default=".env", help="optional .env file (default: .env)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(HANDLERS) + "}")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def _resolve(spec: str) -> Callable[[argparse.Namespace, Settings], int]:
    module_name, func_name = spec.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    usage_of = getattr(args, "usage_of", None)
    if usage_of is not None and getattr(args, args.group_dest) is None:
        usage_of.print_help(sys.stderr)  # `narrator db` alone: say what it can do
        return 2
    try:
        settings = Settings.from_env(args.env_file)
        from bot.logs import setup_logging

        setup_logging(
            settings.log_dir if args.command == "run" else None, logging.DEBUG if args.verbose else logging.INFO
        )
        return int(_resolve(HANDLERS[args.command])(args, settings) or 0)
    except (SettingsError, EngineError, DatabaseUnusable) as exc:
        # a setting, model, device or database the operator must fix: one line, no traceback
        sys.stderr.write(f"narrator: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130

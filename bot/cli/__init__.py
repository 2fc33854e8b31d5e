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

from bot.settings import Settings, SettingsError

log = logging.getLogger(__name__)

# subcommand -> "module:function"; the function takes (args, settings) and returns an exit code.
HANDLERS = {
    "run": "bot.cli.run:main",
    "render": "bot.cli.render:main",
    "db": "bot.cli.db:main",
    "voices": "bot.cli.voices:main",
}


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
    p.add_argument("--design-model", help="VoiceDesign checkpoint for --design (default: NARRATOR_DESIGN_MODEL)")
    p.add_argument("--base-model", help="Base checkpoint for the speaker encoder (default: NARRATOR_BASE_MODEL)")
    p.add_argument("--language", default="auto", help="language of the text (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--out", required=True, help="output file (.wav, .flac or .ogg)")
    p.add_argument("--max-frames", type=int, default=None, help="cap on frames per segment (12.5 frames = 1 s)")


def _add_db(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="database migrations")
    dbsub = p.add_subparsers(dest="db_command", required=True)
    dbsub.add_parser("upgrade", help="apply every pending migration")
    dbsub.add_parser("current", help="print the applied revision")


def _add_voices(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("voices", help="manage the voice library")
    vsub = p.add_subparsers(dest="voices_command", required=True)
    imp = vsub.add_parser("import", help="import a fine-tuned checkpoint as a voice")
    imp.add_argument("directory", help="checkpoint folder written by finetuning/sft_12hz.py")
    imp.add_argument("--name", required=True, help="voice name in the library")
    imp.add_argument("--guild", type=int, default=None, help="guild id to register it for (default: global)")
    imp.add_argument("--speaker", default=None, help="speaker in the checkpoint (default: its only one)")
    vsub.add_parser("list", help="list the voices in the library")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="narrator", description="Discord voice narrator powered by Qwen3-TTS.")
    parser.add_argument("--env-file", default=".env", help="optional .env file (default: .env)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,render,db,voices}")
    for add in (_add_run, _add_render, _add_db, _add_voices):
        add(sub)
    return parser


def _resolve(spec: str) -> Callable[[argparse.Namespace, Settings], int]:
    module_name, func_name = spec.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(args.env_file)
        from bot.logs import setup_logging

        setup_logging(
            settings.log_dir if args.command == "run" else None, logging.DEBUG if args.verbose else logging.INFO
        )
        return int(_resolve(HANDLERS[args.command])(args, settings) or 0)
    except SettingsError as exc:
        sys.stderr.write(f"narrator: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130

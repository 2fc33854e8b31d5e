"""`narrator serve`: one engine behind the OpenAI-compatible speech API until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from bot.settings import Settings

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the engine over HTTP (OpenAI-compatible /v1/audio/speech)")
    p.add_argument("--model", required=True, help="CustomVoice checkpoint folder or hub id (renders every request)")
    p.add_argument("--base-model", default=None, help="Base checkpoint: speaker encoder (voice uploads, ref_audio)")
    p.add_argument("--design-model", default=None, help="VoiceDesign checkpoint (task_type VoiceDesign)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--api-key", action="append", default=[], metavar="KEY",
                   help="accept this bearer key (repeatable); none given: no authentication")  # fmt: skip
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: NARRATOR_DEVICE)")
    p.add_argument("--max-streams", type=int, default=8, help="responses rendered at once; more get 503 (default: 8)")
    p.add_argument("--max-input-chars", type=int, default=4000, help="longest accepted input (default: 4000)")
    p.add_argument(
        "--data-dir", default=None, help="uploaded voices live in DATA_DIR/voices (default: NARRATOR_DATA_DIR)"
    )


def main(args: argparse.Namespace, settings: Settings) -> int:
    from bot.engine.local import LocalEngine
    from bot.engine.options import EngineOptions
    from bot.engine.protocol import EngineError
    from bot.serve.state import ServeConfig

    if not 0 < args.port < 65536:
        sys.stderr.write(f"narrator serve: --port must be 1-65535, got {args.port}\n")
        return 2
    try:
        config = ServeConfig(
            data_dir=settings.data_dir if args.data_dir is None else Path(args.data_dir),
            api_keys=tuple(args.api_key), max_streams=args.max_streams, max_input_chars=args.max_input_chars,
        )  # fmt: skip
        options = EngineOptions(
            custom_voice_model=args.model, base_model=args.base_model, design_model=args.design_model,
            device=args.device or settings.device, dtype=settings.dtype, speed_path=settings.compile,
            max_streams=args.max_streams, cache_dir=settings.data_dir / "compile",
        )  # fmt: skip
    except ValueError as exc:
        sys.stderr.write(f"narrator serve: {exc}\n")
        return 2
    try:
        asyncio.run(_serve(LocalEngine(options), config, args.host, args.port))
    except EngineError as exc:
        sys.stderr.write(f"narrator serve: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"narrator serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}\n")
        return 1
    return 0


async def _serve(engine, config, host: str, port: int) -> None:
    from bot.serve.app import build_app, running

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running(build_app(engine, config), host, port) as url:
        log.info("narrator serve listening on %s (auth %s)", url, "on" if config.api_keys else "off")
        await stop.wait()
    log.info("narrator serve stopped")

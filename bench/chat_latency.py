"""Chat narration latency: a member's message -> the first audible voice packet, in the e2e harness (the real bot and
discord.py against the fake Discord on 127.0.0.1, real sockets, Opus decoded back), vs the engine's own first audio.

    python bench/chat_latency.py [--messages 20] [--model DIR --base-model DIR --design-model DIR] [--device cpu]

Each message is posted into a quiet channel (the previous one is skipped once it is heard), so every figure is the
full path of one message: gateway event -> cog -> rules and cleanup -> queue -> worker -> engine -> resampler ->
voice stream (prebuffer) -> Opus -> UDP. Printed as one JSON line with p50/p95 of:

- `latency_s`: post -> first audible packet at the fake's voice server;
- `engine_first_audio_s`: the production's own time to its first audio chunk (from its start);
- `overhead_s`: latency minus engine first audio (target <= 0.3 s);
- `to_render_s`: message received by the bot -> its render started (rules, cleanup, dictionary, queue).

Without --model it writes tiny random checkpoints into a temporary folder (CPU figures of the plumbing only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

log = logging.getLogger("chat_latency")

GUILD, OWNER, MEMBER = 3000, 2000, 2002
TEXTS = ["Hello there.", "How is everyone doing today?", "I will be right back.", "That was a great game!"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 4), "p95": round(percentile(values, 95), 4)}


def checkpoints(args: argparse.Namespace, folder: Path) -> tuple[str, str, str]:
    if args.model:
        return args.model, args.base_model or args.model, args.design_model or args.model
    from qwen_tts.tiny import write_tiny_checkpoint

    return tuple(str(write_tiny_checkpoint(folder / kind, kind)) for kind in ("custom_voice", "base", "voice_design"))


async def measure(args: argparse.Namespace, folder: Path) -> dict:
    from bot.app import open_bot
    from bot.settings import Settings
    from bot.voice.opus import ensure_opus
    from tests.fakediscord.harness import client_options, discord_pointed_at, wait_until
    from tests.fakediscord.server import FakeDiscord

    custom, base, design = checkpoints(args, folder)
    settings = Settings(custom_voice_model=custom, base_model=base, voice_design_model=design, device=args.device,
                        dtype=args.dtype, compile=False, data_dir=folder / "data", outputs_dir=folder / "outputs",
                        log_dir=folder / "logs", dev_guild_id=GUILD,
                        database_url=f"sqlite+aiosqlite:///{folder / 'data' / 'narrator.db'}")  # fmt: skip
    ensure_opus()
    fake = FakeDiscord(folder / "fake")
    await fake.start()
    fake.add_guild(GUILD, [OWNER, MEMBER])
    rows: list[dict] = []
    try:
        with discord_pointed_at(fake):
            async with open_bot(settings, **client_options(fake)) as bot:
                runner = asyncio.create_task(bot.start("fake-token"))
                await wait_until(lambda: bot.is_ready() or runner.done(), 60, "the bot")
                start = [{"name": "start", "type": 1, "options": []}]
                sent = await fake.command(GUILD, OWNER, "narrate", start)
                await wait_until(sent.answered, 60, "/narrate start")
                chat = bot.services.chat
                for k in range(args.messages):
                    rows.append(await one_message(fake, bot, chat, k, wait_until))
                await bot.close()
                await asyncio.wait_for(runner, 15)
    finally:
        await fake.stop()
    return report(rows, settings)


async def one_message(fake, bot, chat, k: int, wait_until) -> dict:
    author = (OWNER, MEMBER)[k % 2]
    heard_before = len(chat.history)
    posted_at = time.monotonic()
    message = await fake.post_message(GUILD, author, TEXTS[k % len(TEXTS)])

    def first_audible():
        return next((p for p in fake.udp.guild_packets(GUILD, posted_at) if p.audible), None)

    await wait_until(first_audible, 120, f"message {k}'s audio")
    packet = first_audible()
    bot.services.say.skip(GUILD)  # heard: on to the next one in a quiet channel (its render stops too)
    await wait_until(lambda: len(chat.history) > heard_before, 30, f"message {k} to be heard")
    record = chat.history[-1]
    assert record["message_id"] == message.id
    await asyncio.sleep(0.3)
    # a skipped render has no Finished timings: its first audio as seen by the render loop (production start ->
    # first chunk on the event loop, a few ms above the production's own figure) stands in
    engine_first = record["engine_first_audio_s"] or record["first_audio_s"]
    log.warning("message %d: first audible packet %.3f s after posting, engine first audio %.3f s", k,
                packet.at - posted_at, engine_first)  # fmt: skip
    return {
        "latency_s": packet.at - posted_at,
        "engine_first_audio_s": engine_first,
        "render_first_audio_s": record["first_audio_s"],
        "to_render_s": record["started_at"] - record["received_at"],
        "received_s": record["received_at"] - posted_at,
    }


def report(rows: list[dict], settings) -> dict:
    rows = rows[1:] if len(rows) > 2 else rows  # the first message pays one-time costs (voice player start)
    overhead = [r["latency_s"] - r["engine_first_audio_s"] for r in rows]
    return {
        "messages": len(rows),
        "device": settings.device,
        "model": Path(settings.custom_voice_model).name,
        "latency_s": summary([r["latency_s"] for r in rows]),
        "engine_first_audio_s": summary([r["engine_first_audio_s"] for r in rows]),
        "render_first_audio_s": summary([r["render_first_audio_s"] for r in rows]),
        "overhead_s": summary(overhead),
        "to_render_s": summary([r["to_render_s"] for r in rows]),
        "gateway_to_bot_s": summary([r["received_s"] for r in rows]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--model", help="CustomVoice checkpoint folder (default: a tiny random one)")
    parser.add_argument("--base-model")
    parser.add_argument("--design-model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="chat-latency-") as tmp:
        result = asyncio.run(measure(args, Path(tmp)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

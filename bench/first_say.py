"""First /say after start: time to first audio with checkpoints loaded on first use (the old way) vs loaded and warmed
at start (`LocalEngine.start`, what `narrator run` does now), against the 10th render of the same process.

    .venv/bin/python bench/first_say.py [--model DIR] [--renders 10]

Without --model a tiny random CustomVoice + Base checkpoint is written to a temp folder. Each side runs in a fresh
engine; the script, voice and seed are the same. Last line: one JSON object.
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

from bot.engine.local import LocalEngine
from bot.engine.options import EngineOptions
from bot.narration import AudioChunk, DriftGuard, Narrator, parse_script

log = logging.getLogger("bench.first_say")
SCRIPT = "[Calm] Hello there, and welcome back to the story."


async def first_audio_s(narrator: Narrator, voices) -> float:
    started = time.perf_counter()
    first = None
    async for event in narrator.render(parse_script(SCRIPT), voices, keep_master=False, max_frames=24):
        if first is None and isinstance(event, AudioChunk):
            first = time.perf_counter() - started
    assert first is not None, "the render produced no audio"
    return first


async def side(options: EngineOptions, warm: bool, renders: int) -> dict[str, float]:
    engine = LocalEngine(options)
    narrator = Narrator(engine, outputs_dir=None, guard=DriftGuard(enabled=False))
    start_s = 0.0
    if warm:
        started = time.perf_counter()
        await asyncio.to_thread(engine.start)
        start_s = time.perf_counter() - started
    speaker = (await narrator.speakers())[0] if warm else None
    if speaker is None:  # the old way: nothing loaded yet; the first render pays for it (speakers() loads too)
        started = time.perf_counter()
        speaker = (await narrator.speakers())[0]
        voices = {None: await narrator.preset_voice(speaker)}
        first = (time.perf_counter() - started) + await first_audio_s(narrator, voices)
    else:
        voices = {None: await narrator.preset_voice(speaker)}
        first = await first_audio_s(narrator, voices)
    later = [await first_audio_s(narrator, voices) for _ in range(renders - 1)]
    narrator.close()
    engine.close()
    return {"start_s": start_s, "first_s": first, "tenth_s": later[-1], "later_median_s": statistics.median(later)}


def tiny_models(folder: Path) -> tuple[str, str]:
    from qwen_tts.tiny import write_tiny_checkpoint

    return str(write_tiny_checkpoint(folder / "cv", "custom_voice")), str(write_tiny_checkpoint(folder / "b", "base"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="CustomVoice checkpoint (default: a tiny random one)")
    parser.add_argument("--base-model", help="Base checkpoint (default: a tiny random one, with --model unset)")
    parser.add_argument("--renders", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        model, base = (args.model, args.base_model) if args.model else tiny_models(Path(tmp))
        options = EngineOptions(model, base_model=base, device=args.device, speed_path=False)
        lazy = asyncio.run(side(options, warm=False, renders=args.renders))
        warm = asyncio.run(side(options, warm=True, renders=args.renders))
    result = {
        "lazy_first_s": round(lazy["first_s"], 3),
        "lazy_tenth_s": round(lazy["tenth_s"], 3),
        "lazy_first_over_tenth": round(lazy["first_s"] / lazy["tenth_s"], 2),
        "warm_start_s": round(warm["start_s"], 3),
        "warm_first_s": round(warm["first_s"], 3),
        "warm_tenth_s": round(warm["tenth_s"], 3),
        "warm_first_over_tenth": round(warm["first_s"] / warm["tenth_s"], 2),
    }
    log.info("first /say, first audio: %.3f s lazily loaded (%.1fx the 10th), %.3f s warmed at start (%.1fx the 10th)",
             lazy["first_s"], result["lazy_first_over_tenth"], warm["first_s"], result["warm_first_over_tenth"])  # fmt: skip
    print(json.dumps(result))  # the one machine-readable line


if __name__ == "__main__":
    main()

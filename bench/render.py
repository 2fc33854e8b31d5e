"""Narration engine overhead: a 5-segment script through `Narrator.render` vs the plain model time of its segments.

    python bench/render.py [--model DIR --base-model DIR] [--size tiny|0.6b|1.7b] [--device cpu|cuda] [--frames 24]

Baselines, measured in the same run on the same loaded checkpoint with the same texts, instructions, seeds and frame
counts (so the same codes): `synthesize_s`, the sum of plain `QwenTTS.synthesize` per segment, and `stream_s`, the
sum of plain `QwenTTS.stream(chunk_frames=4)`. The narrator adds the event loop hand-off, joins, clipping, the
master WAV, the sidecar and the ETA store; with `--guard` also the drift guard's x-vectors (a Base checkpoint).
Prints one JSON line: time to first audio, totals, and ratios render / baseline (target: <= 1.05).
Without --model it writes random checkpoints of --size into a temporary folder.
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

import torch

from bot.engine.local import LocalEngine
from bot.engine.options import EngineOptions
from bot.narration import DriftGuard, Identity, Narrator, parse_script
from bot.narration.narrator import AudioChunk, Finished

log = logging.getLogger("bench.render")

SCRIPT = (
    "[Calm] The night was quiet over the harbour. [Whispering] Someone was walking on the pier. "
    "[Pause 0.5s] [Excited] A light appeared on the water! [Sad] But it faded as quickly as it came."
)  # 4 speech segments + 1 pause = 5 segments


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="CustomVoice checkpoint (default: a random one of --size)")
    p.add_argument("--base-model", help="Base checkpoint for --guard (default: a random one of --size)")
    p.add_argument("--size", default="tiny", choices=["tiny", "0.6b", "1.7b"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--frames", type=int, default=24, help="frames per speech segment (12.5 = 1 s)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--guard", action="store_true", help="also time a run with the drift guard on")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p.parse_args()


def checkpoints(args: argparse.Namespace, folder: Path) -> tuple[str, str | None]:
    from qwen_tts.tiny import write_tiny_checkpoint

    model = args.model or str(write_tiny_checkpoint(folder / "cv", "custom_voice", size=args.size))
    base = args.base_model
    if args.guard and base is None:
        base = str(write_tiny_checkpoint(folder / "base", "base", size=args.size))
    return model, base


def plain_model_time(engine: LocalEngine, script, identity: Identity, frames: int, chunk_frames: int | None) -> float:
    """Sum over speech segments of a plain synthesize (chunk_frames None) or stream, same request as the narrator."""
    from qwen_tts import SynthesisRequest

    tts = engine.model(identity.model)
    total = 0.0
    for speech in script.speeches:
        req = SynthesisRequest(speech.text, language=identity.language, speaker=identity.speaker,
                               instruct=speech.instruct, sampling=tts.default_sampling(), max_frames=frames)  # fmt: skip
        generator = torch.Generator(device=tts.device).manual_seed(identity.seed)
        _sync(engine)
        started = time.perf_counter()
        if chunk_frames is None:
            tts.synthesize(req, generator)
        else:
            for _ in tts.stream(req, generator, chunk_frames=chunk_frames):
                pass
        _sync(engine)
        total += time.perf_counter() - started
    return total


def _sync(engine: LocalEngine) -> None:
    if engine.device.startswith("cuda"):
        torch.cuda.synchronize()


async def timed_render(narrator: Narrator, script, identity: Identity, frames: int) -> dict[str, float]:
    started = time.perf_counter()
    first = None
    finished = None
    async for event in narrator.render(script, {None: identity}, max_frames=frames):
        if isinstance(event, AudioChunk) and first is None:
            first = time.perf_counter() - started
        elif isinstance(event, Finished):
            finished = event
    total = time.perf_counter() - started
    assert finished is not None, "the render did not finish"
    return {"first_audio_s": first, "total_s": total, "model_s": finished.timings["model_s"],
            "guard_s": finished.timings["guard_s"], "audio_s": finished.audio_seconds}  # fmt: skip


async def bench(args: argparse.Namespace, model: str, base: str | None, outputs: Path) -> dict:
    engine = LocalEngine(EngineOptions(model, base_model=base, device=args.device, dtype=args.dtype))
    script = parse_script(SCRIPT)
    narrator = Narrator(engine, outputs_dir=outputs, eta_path=outputs / "eta.json", guard=DriftGuard(enabled=False))
    identity = Identity("bench", "preset", model, speaker=(await narrator.speakers())[0], seed=1)
    await timed_render(narrator, script, identity, args.frames)  # warm-up: loading, first-step kernels
    plain_model_time(engine, script, identity, args.frames, None)
    runs, synth, stream = [], [], []
    for _ in range(args.repeats):  # interleaved, so a slow phase of a shared machine hits both sides alike
        runs.append(await timed_render(narrator, script, identity, args.frames))
        synth.append(plain_model_time(engine, script, identity, args.frames, None))
        stream.append(plain_model_time(engine, script, identity, args.frames, 4))
    narrator.close()
    result = summarize(runs, synth, stream)
    if args.guard:
        guarded = Narrator(engine, outputs_dir=outputs, guard=DriftGuard(threshold=-1.0))
        ref = Identity("bench", "preset", model, speaker=identity.speaker, seed=1,
                       reference_vector=await guarded.xvector(torch.randn(24000).numpy() * 0.1, 24000))  # fmt: skip
        await timed_render(guarded, script, ref, args.frames)
        guard_runs = [await timed_render(guarded, script, ref, args.frames) for _ in range(args.repeats)]
        guarded.close()
        result["guard_total_s"] = statistics.median(r["total_s"] for r in guard_runs)
        result["guard_first_audio_s"] = statistics.median(r["first_audio_s"] for r in guard_runs)
        result["guard_ratio_vs_synthesize"] = result["guard_total_s"] / result["synthesize_s"]
    result.update(engine.describe(), frames_per_segment=args.frames, repeats=args.repeats, size=args.size,
                  torch_threads=torch.get_num_threads())  # fmt: skip
    return result


def summarize(runs: list[dict], synth: list[float], stream: list[float]) -> dict:
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    synthesize_s, stream_s = statistics.median(synth), statistics.median(stream)
    return {
        "segments": 5,
        "audio_s": med["audio_s"],
        "first_audio_s": med["first_audio_s"],
        "total_s": med["total_s"],
        "engine_model_s": med["model_s"],
        "synthesize_s": synthesize_s,
        "stream_s": stream_s,
        "ratio_vs_synthesize": med["total_s"] / synthesize_s,
        "ratio_vs_stream": med["total_s"] / stream_s,
        "overhead_vs_own_model_time": med["total_s"] / med["model_s"],
        "first_audio_fraction": med["first_audio_s"] / med["total_s"],
    }


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model, base = checkpoints(args, Path(tmp))
        result = asyncio.run(bench(args, model, base, Path(tmp) / "outputs"))
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()

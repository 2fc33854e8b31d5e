"""Many listeners at once through the real job queue, inference worker, Narrator and LocalEngine: N concurrent renders
(different guilds and users) on a batching engine (`max_streams = N`) vs the one-at-a-time worker (`max_streams = 1`)
on the same checkpoint, measured in the same run.

    .venv/bin/python bench/concurrency.py [--size tiny|0.6b] [--layers 4] [--frames 24] [--concurrency 1,4,8,16]

Random weights (`qwen_tts.tiny`, `--eos never`, so every render makes exactly `--frames` frames). Figures per N:
aggregate audio seconds per wall second, p95 time to first audio, and the Smart ETA's error (|predicted - actual| /
actual of each render's compute time, predicted before it was queued from the speed stored by the earlier level).
Last line: one JSON object with `speedup_at_8`, `first_audio_p95_s` and `eta_error_p50` per N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.engine.local import LocalEngine  # noqa: E402
from bot.engine.options import EngineOptions  # noqa: E402
from bot.jobs.queue import Job, JobQueue  # noqa: E402
from bot.jobs.worker import InferenceWorker  # noqa: E402
from bot.narration import AudioChunk, DriftGuard, Finished, Narrator, parse_script  # noqa: E402

log = logging.getLogger("bench.concurrency")
TEXT = "Once upon a time, the dragon said hello to the castle in the night."
SPEAKERS = ["vivian", "eric", "ryan", "serena", "aiden", "dylan", "sohee", "uncle_fu"]


def checkpoint(size: str, layers: int) -> str:
    from qwen_tts.tiny import write_tiny_checkpoint

    folder = Path(tempfile.gettempdir()) / f"narrator_bench_concurrency_{size}_{layers}"
    if not (folder / "config.json").is_file():
        write_tiny_checkpoint(folder, "custom_voice", size=size, eos="never", layers=layers)
    return str(folder)


async def level(model: str, n: int, streams: int, frames: int, eta_path: Path) -> dict:
    """N renders submitted at once to one worker with `streams` slots; -> throughput, first audio, ETA errors."""
    engine = LocalEngine(EngineOptions(model, device="cpu", dtype="float32", max_streams=streams, speed_path=False))
    await asyncio.to_thread(engine.start)
    queue = JobQueue(max_queued_per_user=4, max_queued_per_guild=1000, max_queued_total=1000)
    worker = InferenceWorker(queue, device="cpu", job_timeout_s=3600, slots=streams)
    narrator = Narrator(engine, outputs_dir=None, compute=worker.compute, eta_path=eta_path,
                        guard=DriftGuard(enabled=False))  # fmt: skip
    worker.bind(narrator)
    worker.start()
    script = parse_script(TEXT)
    firsts: list[float] = []
    heard: set[int] = set()  # jobs whose first audio is counted
    audio_s: list[float] = []
    errors: list[float] = []
    began = time.perf_counter()

    async def render(job: Job, worker: InferenceWorker) -> None:
        identity = await worker.narrator.preset_voice(SPEAKERS[job.user_id % len(SPEAKERS)], seed=job.user_id)
        started = time.perf_counter()
        async for event in worker.narrator.render(script, {None: identity}, keep_master=False, max_frames=frames):
            if isinstance(event, AudioChunk) and job.id not in heard:
                heard.add(job.id)
                firsts.append(time.perf_counter() - began)
            elif isinstance(event, Finished):
                audio_s.append(event.audio_seconds)
                actual = time.perf_counter() - started
                errors.append(abs(job.predicted_s - actual) / actual)

    jobs = [Job(i, i, render, predicted_s=narrator.predict_seconds(script)) for i in range(n)]
    for job in jobs:
        queue.submit(job)
    await asyncio.gather(*(job.done for job in jobs))
    wall = time.perf_counter() - began
    await worker.close()
    engine.close()
    return {"audio_per_s": sum(audio_s) / wall, "first_audio_p95_s": _p95(firsts), "eta_error_p50": _p50(errors)}


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def run(args: argparse.Namespace) -> dict:
    model = checkpoint(args.size, args.layers)
    levels = [int(x) for x in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        eta = Path(tmp) / "eta.json"
        await level(model, 1, 1, args.frames, eta)  # warm-up, and a stored speed for the first ETA
        result: dict = {"frames": args.frames, "size": args.size, "layers": args.layers}
        for n in levels:
            alone = await level(model, n, 1, args.frames, eta)
            batched = await level(model, n, n, args.frames, eta)
            ratio = batched["audio_per_s"] / alone["audio_per_s"]
            log.info("N=%d: %.3f audio s/s batched vs %.3f one at a time (%.2fx); first audio p95 %.2f s vs %.2f s; "
                     "ETA error p50 %.0f%%", n, batched["audio_per_s"], alone["audio_per_s"], ratio,
                     batched["first_audio_p95_s"], alone["first_audio_p95_s"], 100 * batched["eta_error_p50"])  # fmt: skip
            result[f"speedup_at_{n}"] = round(ratio, 2)
            result.setdefault("first_audio_p95_s", {})[n] = round(batched["first_audio_p95_s"], 3)
            result.setdefault("one_at_a_time_first_audio_p95_s", {})[n] = round(alone["first_audio_p95_s"], 3)
            result.setdefault("eta_error_p50", {})[n] = round(batched["eta_error_p50"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny", choices=["tiny", "0.6b", "1.7b"])
    parser.add_argument("--layers", type=int, default=4, help="talker layers (fewer keep a CPU run to minutes)")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--concurrency", default="1,4,8")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(json.dumps(asyncio.run(run(args))))  # the one machine-readable line


if __name__ == "__main__":
    main()

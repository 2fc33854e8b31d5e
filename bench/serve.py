"""The remote path's overhead: the same concurrent load in-process and through `narrator serve` over loopback HTTP.

    python bench/serve.py [--model DIR] [--size tiny|0.6b|1.7b] [--device cpu|cuda] [--streams 4] [--frames 48]
                          [--rounds 3]

One `LocalEngine` serves both paths in the same run: `--streams` renders at once (each its own thread, as the bot's
workers do), every one the same segment request (preset speaker, seed, `--frames` frames). In-process each thread
iterates `engine.stream`; remote each thread iterates `RemoteEngine.stream` against a server on 127.0.0.1 over that
engine. Rounds alternate the two so load drift hits both. Prints one JSON line: throughput (audio seconds per wall
second) and mean first-audio latency per path, and the ratios (targets: throughput >= 0.95, first audio <= +20 ms).
Without --model it writes a random checkpoint of --size (EOS never, so every render is exactly --frames long).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.engine.local import LocalEngine
from bot.engine.options import EngineOptions
from bot.engine.protocol import SpeechRequest
from bot.engine.remote import RemoteEngine, RemoteOptions
from bot.serve.state import ServeConfig
from tests.serving import ServerThread

log = logging.getLogger("bench.serve")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="CustomVoice checkpoint (default: a random one of --size)")
    p.add_argument("--size", default="tiny", choices=("tiny", "0.6b", "1.7b"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--rounds", type=int, default=3)
    return p.parse_args()


def load(engine, requests: list[SpeechRequest]) -> dict[str, float]:
    """Run every request at once on its own thread; audio seconds, wall seconds and each first-audio latency."""
    firsts: list[float] = []
    samples = [0] * len(requests)
    started = time.perf_counter()

    def one(index: int) -> None:
        begun = time.perf_counter()
        for chunk in engine.stream(requests[index], lambda: False):
            if samples[index] == 0:
                firsts.append(time.perf_counter() - begun)
            samples[index] += len(chunk)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"audio_s": sum(samples) / 24_000, "wall_s": wall, "first_s": statistics.mean(firsts)}


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    folder = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    model = args.model
    if model is None:
        from qwen_tts.tiny import write_tiny_checkpoint

        model = str(write_tiny_checkpoint(folder / "cv", "custom_voice", size=args.size, eos="never"))
    engine = LocalEngine(EngineOptions(model, device=args.device, speed_path=args.device != "cpu",
                                       max_streams=args.streams))  # fmt: skip
    requests = [SpeechRequest("The same line for every stream of the load.", model, speaker="aiden", seed=i,
                              max_frames=args.frames, route=str(i)) for i in range(args.streams)]  # fmt: skip
    with ServerThread(engine, ServeConfig(data_dir=folder / "data", max_streams=args.streams)) as server:
        remote = RemoteEngine(RemoteOptions((server.url,)))
        remote.start()
        load(engine, requests[:1]), load(remote, requests[:1])  # warm both paths
        runs: dict[str, list[dict]] = {"local": [], "http": []}
        for _ in range(args.rounds):
            runs["local"].append(load(engine, requests))
            runs["http"].append(load(remote, requests))
        remote.close()
    summary = {}
    for name, rows in runs.items():
        summary[name] = {
            "throughput_x": round(statistics.median(r["audio_s"] / r["wall_s"] for r in rows), 3),
            "first_audio_ms": round(1000 * statistics.median(r["first_s"] for r in rows), 1),
        }
    result = {
        "model": args.model or f"random {args.size}", "device": args.device, "streams": args.streams,
        "frames": args.frames, "rounds": args.rounds, **summary,
        "throughput_ratio": round(summary["http"]["throughput_x"] / summary["local"]["throughput_x"], 3),
        "first_audio_delta_ms": round(summary["http"]["first_audio_ms"] - summary["local"]["first_audio_ms"], 1),
    }  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Every generation and codec figure of the GPU targets, one process, one JSON line per figure (``bench/gpu.sh``).

    .venv/bin/python bench/gpu_figures.py --checkpoint DIR [--device cuda] [--dtype bf16] [--frames 100]
        [--batch 8] [--many 32] [--cache-dir DIR] [--compile-backend inductor] [--no-compile]

Figures, in order (``"figure"`` names the line):
- ``single_stream``: one request through ``BatchEngine(max_rows=1)`` on the speed path: x real time, first audio (s);
- ``single_stream_fast_path``: the same request through ``generate_codes`` + streaming codec (the pre-batching path);
- ``peak_memory_one_stream``: ``torch.cuda.max_memory_allocated`` after the model and one stream (GiB);
- ``batch``: ``--batch`` requests at once (aggregate x real time, per-stream minimum x real time, first audio p95);
- ``concurrent``: ``--many`` requests at once, same fields;
- ``codec``: whole decode and 16-frame streaming decode of the codec alone, x real time.
The compile warm-up time is reported on its own line (``warm_up``) for each engine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEXT = "Once upon a time, the dragon said hello to the castle in the night, and the castle answered."
SPEAKERS = ["vivian", "eric", "ryan", "serena", "aiden", "dylan", "sohee", "uncle_fu"]


def emit(figure: str, **fields) -> None:
    print(json.dumps({"figure": figure, **fields}), flush=True)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def request(i: int, frames: int):
    from qwen_tts import SynthesisRequest

    return SynthesisRequest(TEXT, speaker=SPEAKERS[i % len(SPEAKERS)], max_frames=frames)


def run_streams(engine, tts, n: int, frames: int) -> dict:
    """n requests submitted at once from n threads: aggregate and per-stream rates, first-audio percentiles."""
    firsts, walls = [0.0] * n, [0.0] * n
    barrier = threading.Barrier(n + 1)

    def run(i):
        barrier.wait()
        began = time.perf_counter()
        for chunk_index, _ in enumerate(engine.submit(request(i, frames), seed=i)):
            if chunk_index == 0:
                firsts[i] = time.perf_counter() - began
        walls[i] = time.perf_counter() - began

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    audio_s = frames / tts.frame_rate
    ordered = sorted(firsts)
    return {
        "streams": n, "frames": frames,
        "aggregate_x_realtime": round(n * audio_s / wall, 2),
        "min_stream_x_realtime": round(audio_s / max(walls), 2),
        "first_audio_p50_s": round(statistics.median(firsts), 4),
        "first_audio_p95_s": round(ordered[min(n - 1, round(0.95 * (n - 1)))], 4),
    }  # fmt: skip


def fast_path(tts, frames: int) -> dict:
    import torch

    started = time.perf_counter()
    first = None
    decoder, pending, size = tts.codec.stream_decoder(), [], 2
    for codes in tts.generate_codes(request(0, frames), torch.Generator().manual_seed(0)):
        pending.append(codes)
        if len(pending) == size:
            decoder.push(torch.stack(pending))
            first = first if first is not None else time.perf_counter() - started
            pending, size = [], min(2 * size, 16)
    if pending:
        decoder.push(torch.stack(pending))
    wall = time.perf_counter() - started
    return {"x_realtime": round(frames / tts.frame_rate / wall, 2), "first_audio_s": round(first or wall, 4)}


def codec_figures(tts, frames: int, device: str) -> dict:
    import torch

    codes = torch.randint(0, 2048, (frames, tts.num_code_groups), device=tts.codec.device)
    tts.codec.decode(codes[:8])
    sync(device)
    t = time.perf_counter()
    tts.codec.decode(codes)
    sync(device)
    whole = time.perf_counter() - t
    stream = tts.codec.stream_decoder()
    t = time.perf_counter()
    for i in range(0, frames, 16):
        stream.push(codes[i : i + 16])
    sync(device)
    streamed = time.perf_counter() - t
    audio_s = frames / tts.frame_rate
    return {"frames": frames, "whole_x_realtime": round(audio_s / whole, 1),
            "stream16_x_realtime": round(audio_s / streamed, 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--many", type=int, default=32)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args(argv)
    import torch

    from qwen_tts import QwenTTS
    from qwen_tts.batching import BatchEngine
    from qwen_tts.options import RuntimeOptions

    cuda = args.device.startswith("cuda")
    opts = RuntimeOptions(device=args.device, dtype=args.dtype, compile=not args.no_compile,
                          compile_cache_dir=args.cache_dir)  # fmt: skip
    t = time.perf_counter()
    tts = QwenTTS.from_pretrained(args.checkpoint, load_codec_encoder=False, options=opts)
    emit("load", seconds=round(time.perf_counter() - t, 2), size=tts.config.tts_model_size, dtype=args.dtype,
         device=args.device, compiled=tts.speed_path_active)  # fmt: skip
    cache_len = 256 + args.frames
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with BatchEngine(tts, max_rows=1, cache_len=cache_len, compile_backend=args.compile_backend) as one:
        emit("warm_up", rows=1, seconds=round(one.warm_up(), 2))
        run_streams(one, tts, 1, 8)
        got = run_streams(one, tts, 1, args.frames)
        emit("single_stream", x_realtime=got["aggregate_x_realtime"], first_audio_s=got["first_audio_p50_s"],
             frames=args.frames)  # fmt: skip
        if cuda:
            emit("peak_memory_one_stream", gib=round(torch.cuda.max_memory_allocated() / 2**30, 3))
    emit("single_stream_fast_path", **fast_path(tts, args.frames))
    if cuda:
        torch.cuda.empty_cache()
    most = max(args.batch, args.many)
    with BatchEngine(tts, max_rows=most, cache_len=cache_len, compile_backend=args.compile_backend) as engine:
        emit("warm_up", rows=most, seconds=round(engine.warm_up(), 2))
        run_streams(engine, tts, 2, 8)
        emit("batch", **run_streams(engine, tts, args.batch, args.frames))
        emit("concurrent", **run_streams(engine, tts, args.many, args.frames))
    emit("codec", **codec_figures(tts, 4 * args.frames, args.device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

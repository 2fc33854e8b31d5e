"""Continuous batching throughput: N concurrent requests through ``BatchEngine`` vs one at a time, same run.

    .venv/bin/python bench/batching.py [--size 0.6b] [--layers 4] [--frames 24] [--concurrency 1,4,8,16]
        [--sequential 3] [--threads 2] [--device cpu] [--dtype fp32] [--compile] [--codes-only] [--paths]
        [--checkpoint DIR] [--dry-run]

Random weights (``qwen_tts.tiny``, ``--eos never`` so every request makes exactly ``--frames`` frames) with the
size's widths and ``--layers`` talker layers. "One at a time" is today's single-request path (``generate_codes`` on
the fused stepper, the exact streaming codec with the 2, 4, 8, 16 chunk schedule), requests run back to back.
Each concurrency level N submits N requests at once from N threads. Figures: aggregate audio seconds per wall second,
p50/p95 time to first audio, ratio to one at a time. ``--codes-only`` leaves the codec out (language model only).
To say what bounds the step, it also times one decode step at batch 1 and 8 against this machine's copy bandwidth
and matmul rate (weights read per step / time = GB/s; 2 * weights * rows / time = GFLOP/s). ``--paths`` compares,
at batch 1, the fused fast path, the engine's eager step and (with ``--compile``) its compiled step.
``--dry-run``: the tiny model, 6 frames, N = 1, 2 (a smoke test of this script). Last line: one JSON object.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
log = logging.getLogger("bench.batching")

TEXTS = [
    "Once upon a time, the dragon said hello to the castle in the night.",
    "The knight rode north across the frozen river before dawn.",
    "Nobody in the village had ever seen a ship that large.",
    "She opened the letter slowly and read it twice.",
]
SPEAKERS = ["vivian", "eric", "ryan", "serena", "aiden", "dylan", "sohee", "uncle_fu"]


def checkpoint(args) -> Path:
    from qwen_tts.tiny import write_tiny_checkpoint

    if args.checkpoint:
        return Path(args.checkpoint)
    folder = Path(tempfile.gettempdir()) / f"qwen_tts_bench_{args.size}_{args.layers}_never"
    if not (folder / "config.json").is_file():
        write_tiny_checkpoint(folder, "custom_voice", size=args.size, eos="never", layers=args.layers)
    return folder


def request(i: int, frames: int):
    from qwen_tts import SynthesisRequest

    return SynthesisRequest(TEXTS[i % len(TEXTS)], speaker=SPEAKERS[i % len(SPEAKERS)], max_frames=frames)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def one_at_a_time(tts, n: int, frames: int, codes_only: bool) -> dict:
    """Today's path: one request after the other, codes then chunked exact streaming decode."""
    import torch

    firsts, audio_s = [], 0.0
    start = time.perf_counter()
    for i in range(n):
        began = time.perf_counter()
        decoder, pending, size, first = tts.codec.stream_decoder(), [], 2, None
        for codes in tts.generate_codes(request(i, frames), torch.Generator().manual_seed(i)):
            pending.append(codes)
            if codes_only and first is None:
                first = time.perf_counter() - began
            if not codes_only and len(pending) == size:
                decoder.push(torch.stack(pending))
                first = first if first is not None else time.perf_counter() - began
                pending, size = [], min(2 * size, 16)
        if pending and not codes_only:
            decoder.push(torch.stack(pending))
        firsts.append(first if first is not None else time.perf_counter() - began)
        audio_s += frames / tts.frame_rate
    wall = time.perf_counter() - start
    return {"audio_s_per_s": audio_s / wall, "first_audio_p50_s": statistics.median(firsts),
            "first_audio_p95_s": percentile(firsts, 0.95), "wall_s": wall}  # fmt: skip


def concurrent(engine, tts, n: int, frames: int, codes_only: bool) -> dict:
    firsts: list[float] = []
    done = []
    lock = threading.Lock()
    barrier = threading.Barrier(n + 1)

    def run(i):
        barrier.wait()
        began = time.perf_counter()
        first = None
        for _ in engine.submit(request(i, frames), seed=i, audio=not codes_only):
            if first is None:
                first = time.perf_counter() - began
        with lock:
            firsts.append(first)
            done.append(frames)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    audio_s = sum(done) / tts.frame_rate
    return {"audio_s_per_s": audio_s / wall, "first_audio_p50_s": statistics.median(firsts),
            "first_audio_p95_s": percentile(firsts, 0.95), "wall_s": wall}  # fmt: skip


def machine_limits() -> dict:
    """Copy bandwidth (GB/s, read + write) and fp32 matmul rate (GFLOP/s) of this machine right now."""
    import torch

    src = torch.empty(64 * 2**20, dtype=torch.float32)  # 256 MiB: far beyond any cache
    dst = torch.empty_like(src)
    dst.copy_(src)
    t = time.perf_counter()
    for _ in range(3):
        dst.copy_(src)
    copy_gbs = 3 * 2 * src.numel() * 4 / (time.perf_counter() - t) / 1e9
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    t = time.perf_counter()
    for _ in range(5):
        a @ b
    gflops = 5 * 2 * 1024**3 / (time.perf_counter() - t) / 1e9
    return {"copy_gb_s": round(copy_gbs, 1), "matmul_gflop_s": round(gflops, 1)}


def step_bound(engine, tts, rows_list: list[int]) -> dict:
    """Seconds per decode step at each batch size, and what that means in bytes and flops."""
    import torch

    from qwen_tts.row_sampling import Plan

    talker = tts.model.talker
    cp = talker.code_predictor
    elem = talker.codec_head.weight.element_size()
    per_layer = sum(p.numel() for p in talker.model.layers.parameters())
    cp_layer = sum(p.numel() for p in cp.model.layers.parameters())
    head = talker.codec_head.weight.numel()
    cp_head = cp.lm_head[0].weight.numel()
    weights_per_step = per_layer + head + cp.num_steps * (cp_layer + cp_head)  # params each row multiplies by
    bufs = engine.runner.bufs
    out = {"weights_read_per_step_mb": round(weights_per_step * elem / 2**20, 1)}
    for rows in rows_list:
        text = torch.zeros(rows, bufs.hidden.shape[1], dtype=bufs.hidden.dtype)
        u = torch.full((rows, tts.num_code_groups), 0.5)
        plan = Plan.for_params([tts.default_sampling()])
        engine.runner.step(rows, text, u, plan)
        t = time.perf_counter()
        reps = 3
        for _ in range(reps):
            engine.runner.step(rows, text, u, plan)
        dt = (time.perf_counter() - t) / reps
        out[f"step_s_at_{rows}"] = round(dt, 4)
        out[f"gb_s_at_{rows}"] = round(weights_per_step * elem / dt / 1e9, 1)
        out[f"gflop_s_at_{rows}"] = round(2 * weights_per_step * rows / dt / 1e9, 1)
    bufs.seen.fill_(False)
    return out


def paths(tts, frames: int, compiled_engine, cache_len: int) -> dict:
    """frames/s of one request on each decode path (same model, same run)."""
    import torch

    from qwen_tts import SamplingParams
    from qwen_tts.batching import BatchEngine

    req = request(0, frames)
    req.sampling = SamplingParams.greedy()
    out = {}
    list(tts.generate_codes(req))
    t = time.perf_counter()
    list(tts.generate_codes(req))
    out["fast_path_fps"] = frames / (time.perf_counter() - t)
    with BatchEngine(tts, max_rows=1, cache_len=cache_len, options=tts.options.replace(compile=False)) as eager:
        list(eager.submit(req, audio=False))
        t = time.perf_counter()
        eager_codes = torch.stack(list(eager.submit(req, audio=False)))
        out["eager_step_fps"] = frames / (time.perf_counter() - t)
    if compiled_engine is not None:
        t = time.perf_counter()
        codes = torch.stack(list(compiled_engine.submit(req, audio=False)))
        out["compiled_step_fps"] = frames / (time.perf_counter() - t)
        out["compiled_equals_eager"] = bool(torch.equal(codes, eager_codes))
    return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="0.6b", choices=["tiny", "0.6b", "1.7b"])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--sequential", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--codes-only", action="store_true")
    parser.add_argument("--paths", action="store_true")
    parser.add_argument("--checkpoint")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.size, args.layers, args.frames, args.concurrency, args.sequential = "tiny", None, 6, "1,2", 1
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import torch

    from qwen_tts import QwenTTS
    from qwen_tts.batching import BatchEngine
    from qwen_tts.options import RuntimeOptions

    if args.threads:
        torch.set_num_threads(args.threads)
    ns = [int(n) for n in args.concurrency.split(",")]
    opts = RuntimeOptions(device=args.device, dtype=args.dtype, compile=args.compile)
    tts = QwenTTS.from_pretrained(checkpoint(args), load_codec_encoder=False, options=opts)
    result: dict = {"size": args.size, "layers": tts.config.talker_config.num_hidden_layers, "frames": args.frames,
                    "device": args.device, "dtype": args.dtype, "threads": torch.get_num_threads(),
                    "compiled": tts.speed_path_active, "codes_only": args.codes_only}  # fmt: skip
    one_at_a_time(tts, 1, min(4, args.frames), args.codes_only)  # warm-up
    base = one_at_a_time(tts, args.sequential, args.frames, args.codes_only)
    print(f"one at a time: {base['audio_s_per_s']:.3f} audio s/s, first audio p95 {base['first_audio_p95_s']:.3f} s")
    result["one_at_a_time"] = {k: round(v, 4) for k, v in base.items()}
    cache_len = 64 + args.frames + 8 if args.size != "tiny" else 256
    with BatchEngine(tts, max_rows=max(ns), cache_len=max(cache_len, 128)) as engine:
        result["warm_up_s"] = round(engine.warm_up(), 2)
        concurrent(engine, tts, 1, min(4, args.frames), args.codes_only)  # warm-up
        for n in ns:
            got = concurrent(engine, tts, n, args.frames, args.codes_only)
            ratio = got["audio_s_per_s"] / base["audio_s_per_s"]
            print(f"N={n:2d}: {got['audio_s_per_s']:.3f} audio s/s = {ratio:.2f}x one at a time, "
                  f"first audio p50 {got['first_audio_p50_s']:.3f} s p95 {got['first_audio_p95_s']:.3f} s")  # fmt: skip
            result[f"n{n}"] = {**{k: round(v, 4) for k, v in got.items()}, "speedup": round(ratio, 2)}
        if 8 in ns:
            result["speedup_at_8"] = result["n8"]["speedup"]
        result["first_audio_p95_s"] = {n: result[f"n{n}"]["first_audio_p95_s"] for n in ns}
        result["bound"] = {**step_bound(engine, tts, [1, min(8, max(ns))]), **machine_limits()}
        print(f"step: {result['bound']}")
        if args.paths:
            result["paths"] = paths(tts, args.frames, engine if engine.compiled else None, engine.cache_len)
            print(f"paths at batch 1: {result['paths']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

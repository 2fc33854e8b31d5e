"""Codec decoder speed: ours (exact streaming and whole decode) vs the official decode, same weights, same run.

    .venv/bin/python bench/codec.py [--frames 300] [--size tiny|full] [--threads 1] [--device cpu|cuda] [--repeats 5]

Prints one JSON line. Rates are frames/s (12.5 frames = 1 s of audio; "x_realtime" = frames/s / 12.5), latencies ms,
each the best of ``--repeats`` runs. The official side runs in ``.venv-oracle`` (a subprocess of this same file with
``--official-worker``) on the same speech_tokenizer/ folder and the same codes:
* official_whole: ``Qwen3TTSTokenizerV2Model.decode`` (its 300-frame chunks with 25 frames of re-decoded context);
* official_sliding: what streaming users of the official code do (faster-qwen3-tts, Qwen3-TTS-streaming): decode each
  new chunk together with 25 frames of left context and keep the new part (approximate);
* official_first_chunk_ms: decoding a 1-frame input, the least the official code can do before its first audio.
Ours: whole decode, exact streaming in chunks of 1 and ``--chunk`` frames, and the first pushed frame's latency.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger("bench.codec")

REPO = Path(__file__).resolve().parent.parent
ORACLE_PY = REPO / ".venv-oracle" / "bin" / "python"
LEFT_CONTEXT = 25


def best_seconds(fn, repeats: int, sync) -> float:
    """Fastest of ``repeats`` timed calls (after one warm-up), in seconds."""
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def make_sync(device: str):
    import torch

    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def stream_all(codec, codes, chunk: int) -> None:
    stream = codec.stream_decoder()
    for start in range(0, codes.shape[0], chunk):
        stream.push(codes[start : start + chunk])


def time_ours(codec_dir: Path, codes, args) -> dict:
    import torch

    from qwen_tts.codec.codec import Codec

    codec = Codec.from_pretrained(codec_dir, device=args.device, load_encoder=False)
    codes = codes.to(args.device)
    sync, n = make_sync(args.device), codes.shape[0]
    whole = best_seconds(lambda: codec.decode(codes), args.repeats, sync)
    stream1 = best_seconds(lambda: stream_all(codec, codes, 1), max(1, args.repeats // 2), sync)
    stream_c = best_seconds(lambda: stream_all(codec, codes, args.chunk), args.repeats, sync)
    first = best_seconds(lambda: codec.stream_decoder().push(codes[:1]), args.repeats * 4, sync)
    with torch.inference_mode():
        streamed = torch.cat([s for s in _pushes(codec, codes, args.chunk)])
    exact = float((streamed - codec.decode(codes)).abs().max())
    return {
        "ours_whole_fps": n / whole,
        "ours_stream1_fps": n / stream1,
        f"ours_stream{args.chunk}_fps": n / stream_c,
        "ours_first_chunk_ms": first * 1e3,
        "ours_stream_vs_whole_max_abs": exact,
    }


def _pushes(codec, codes, chunk: int):
    stream = codec.stream_decoder()
    for start in range(0, codes.shape[0], chunk):
        yield stream.push(codes[start : start + chunk])


def time_official(codec_dir: Path, codes_path: Path, args) -> dict:
    if not ORACLE_PY.exists():
        raise SystemExit(f"{ORACLE_PY} is missing: build it with tests/oracle/setup_venv.sh")
    cmd = [str(ORACLE_PY), "-P", str(Path(__file__).resolve()), "--official-worker", str(codec_dir), str(codes_path)]
    cmd += [
        "--threads",
        str(args.threads),
        "--repeats",
        str(args.repeats),
        "--chunk",
        str(args.chunk),
        "--device",
        args.device,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"official worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def official_worker(argv: list[str]) -> None:
    """Runs inside .venv-oracle: times the official decoder on the given folder and codes, prints one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("codec_dir")
    parser.add_argument("codes")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "tests" / "oracle"))
    from shim import import_official

    import_official()
    import numpy as np
    import torch

    from qwen_tts import Qwen3TTSTokenizer

    torch.set_num_threads(args.threads)
    tok = Qwen3TTSTokenizer.from_pretrained(args.codec_dir, device_map=args.device)
    model = tok.model
    codes = torch.from_numpy(np.load(args.codes)).to(args.device)[None]  # (1, T, 16)
    sync, n = make_sync(args.device), codes.shape[1]

    def sliding() -> None:
        for start in range(0, n, args.chunk):
            context = min(LEFT_CONTEXT, start)
            model.decode(codes[:, start - context : start + args.chunk])

    with torch.inference_mode():
        whole = best_seconds(lambda: model.decode(codes), args.repeats, sync)
        slide = best_seconds(sliding, args.repeats, sync)
        first = best_seconds(lambda: model.decode(codes[:, :1]), args.repeats * 4, sync)
    print(json.dumps({
        "official_whole_fps": n / whole,
        f"official_sliding{args.chunk}_fps": n / slide,
        "official_first_chunk_ms": first * 1e3,
    }))  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--official-worker":
        official_worker(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-official", action="store_true", help="time ours only (e.g. no .venv-oracle)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import numpy as np
    import torch

    from qwen_tts.codec.tiny import write_tiny_codec

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        codec_dir = write_tiny_codec(Path(tmp) / "speech_tokenizer", size=args.size, seed=0)
        codes = torch.randint(0, 2048, (args.frames, 16), generator=torch.Generator().manual_seed(0))
        codes_path = Path(tmp) / "codes.npy"
        np.save(codes_path, codes.numpy())
        result = {"size": args.size, "frames": args.frames, "threads": args.threads, "device": args.device}
        result.update(time_ours(codec_dir, codes, args))
        if not args.no_official:
            result.update(time_official(codec_dir, codes_path, args))
            result["whole_speedup_vs_official"] = result["ours_whole_fps"] / result["official_whole_fps"]
            result["stream_speedup_vs_official_sliding"] = (
                result[f"ours_stream{args.chunk}_fps"] / result[f"official_sliding{args.chunk}_fps"]
            )
            result["first_chunk_latency_ratio"] = result["ours_first_chunk_ms"] / result["official_first_chunk_ms"]
    result["ours_whole_x_realtime"] = result["ours_whole_fps"] / 12.5
    print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()

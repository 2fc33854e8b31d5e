"""Generation speed: ours vs the official qwen-tts package on the same weights, prompt and frame count.

    .venv/bin/python bench/generation.py [--size tiny|0.6b|1.7b] [--frames 100] [--device cpu|cuda] [--dtype fp32|bf16]
        [--threads 1] [--sampling greedy|default] [--batch 1] [--repeat 3] [--cuda-graphs] [--checkpoint DIR]
        [--no-official]

Builds (or reuses) an ``--eos never`` random checkpoint so both sides generate exactly ``--frames`` frames. Ours runs
in this process; the official package runs in ``.venv-oracle`` (tests/oracle/setup_venv.sh) through the ORACLE
helper's import shim, in a subprocess, after a warm-up run on each side; each side reports its best of ``--repeat``
timed runs (the CI machine is shared). Prints one JSON line: ours_fps, official_fps,
ratio, ttff_ms (ours: first frame available), official_ttff_ms (the official API returns all frames at once), device.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
log = logging.getLogger("bench.generation")

TEXT = "Once upon a time, the dragon said hello to the castle in the night."
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}

OFFICIAL = r"""
import json, sys, time
sys.path.insert(0, "tests/oracle")
import shim
q = shim.import_official()
import torch
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
m = q.Qwen3TTSModel.from_pretrained(a["dir"], dtype=getattr(torch, a["dtype"]), device_map=a["device"])
ids = m.processor(text="<|im_start|>assistant\n" + a["text"] + "<|im_end|>\n<|im_start|>assistant\n",
                  return_tensors="pt")["input_ids"].to(a["device"])
kw = dict(languages=["english"], speakers=["vivian"], non_streaming_mode=True)
if a["greedy"]:
    kw.update(do_sample=False, subtalker_dosample=False, repetition_penalty=1.0)
def run(n):
    if a["device"] == "cuda": torch.cuda.synchronize()
    t = time.perf_counter()
    codes, _ = m.model.generate(input_ids=[ids] * a["batch"], max_new_tokens=n + 1, **kw)
    if a["device"] == "cuda": torch.cuda.synchronize()
    return time.perf_counter() - t, codes[0].shape[0]
run(5)
dt, n = min(run(a["frames"]) for _ in range(a["repeat"]))
print(json.dumps({"fps": n * a["batch"] / dt, "frames": n, "seconds": dt}))
"""


def build_checkpoint(size: str, folder: Path) -> Path:
    from qwen_tts.tiny import write_tiny_checkpoint

    if not (folder / "config.json").is_file():
        write_tiny_checkpoint(folder, "custom_voice", size=size, seed=0, eos="never")
    return folder


def run_ours(args, folder: Path) -> dict:
    import torch

    from qwen_tts import QwenTTS, SamplingParams, SynthesisRequest

    dtype = getattr(torch, DTYPES[args.dtype])
    tts = QwenTTS.from_pretrained(
        folder, device=args.device, dtype=dtype, load_codec_encoder=False, cuda_graphs=args.cuda_graphs
    )
    sampling = SamplingParams.greedy() if args.sampling == "greedy" else SamplingParams()

    def make(n):
        return SynthesisRequest(TEXT, language="english", speaker="vivian", sampling=sampling, max_frames=n)

    def sync():
        if args.device == "cuda":
            torch.cuda.synchronize()

    def run(n):
        reqs = make(n) if args.batch == 1 else [make(n)] * args.batch
        sync()
        start = time.perf_counter()
        first, count = None, 0
        for _codes in tts.generate_codes(reqs, torch.Generator(args.device).manual_seed(0)):
            if first is None:
                sync()
                first = time.perf_counter() - start
            count += 1
        sync()
        return time.perf_counter() - start, first, count

    run(5)
    run(args.frames)  # second warm-up: graph capture / allocator settle at the full length
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    total, first, count = min(run(args.frames) for _ in range(args.repeat))  # best of: the machine may be shared
    out = {"fps": count * args.batch / total, "ttff_ms": first * 1000, "frames": count, "seconds": total}
    if args.device == "cuda":
        out["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def run_official(args, folder: Path) -> dict | None:
    python = ROOT / ".venv-oracle" / "bin" / "python"
    if not python.exists():
        log.warning("no .venv-oracle (run tests/oracle/setup_venv.sh); official side skipped")
        return None
    payload = {"dir": str(folder), "dtype": DTYPES[args.dtype], "device": args.device, "threads": args.threads,
               "text": TEXT, "greedy": args.sampling == "greedy", "frames": args.frames, "batch": args.batch,
               "repeat": args.repeat}  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(python), "-P", "-c", OFFICIAL, json.dumps(payload)], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    if proc.returncode:
        log.error("official run failed:\n%s", proc.stderr[-3000:])
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="tiny", choices=["tiny", "0.6b", "1.7b"])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sampling", default="greedy", choices=["greedy", "default"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per side; the best one counts")
    parser.add_argument("--cuda-graphs", action="store_true", help="opt in to our CUDA-graph path")
    parser.add_argument("--checkpoint", type=Path, help="an --eos never checkpoint folder (built when missing)")
    parser.add_argument("--no-official", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    folder = args.checkpoint or Path(tempfile.gettempdir()) / f"qwen_tts_bench_{args.size}_eos_never"
    build_checkpoint(args.size, folder)
    ours = run_ours(args, folder)
    official = None if args.no_official else run_official(args, folder)
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu x{args.threads} thread(s)"
    result = {
        "ours_fps": round(ours["fps"], 1),
        "official_fps": round(official["fps"], 1) if official else None,
        "ratio": round(ours["fps"] / official["fps"], 2) if official else None,
        "ttff_ms": round(ours["ttff_ms"], 1),
        "official_ttff_ms": round(official["seconds"] * 1000, 1) if official else None,
        "realtime_x": round(ours["fps"] / 12.5, 2),
        "device": device, "size": args.size, "dtype": args.dtype, "frames": args.frames, "batch": args.batch,
        "sampling": args.sampling, "cuda_graphs": args.cuda_graphs, "repeat": args.repeat,
    }  # fmt: skip
    if "peak_gpu_gib" in ours:
        result["peak_gpu_gib"] = round(ours["peak_gpu_gib"], 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

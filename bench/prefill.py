"""What bounds first audio when N requests arrive together: N prompts prefilled one after another vs in one pass.

    .venv/bin/python bench/prefill.py [--size tiny] [--layers 4] [--rows 8] [--repeats 20] [--threads N]

Same checkpoint and text as ``bench/concurrency.py`` (random weights, preset speakers). Times, median of
``--repeats``: one prefill alone, ``--rows`` prefills one after another (the engine before batched joins), the same
prompts in one right-padded pass (``StepRunner.prefill_many``), and one decode step over 1 and ``--rows`` rows
(the engine's eager step, default sampling settings; ``--threads`` torch threads, default torch's own), and the
time a frame takes on the single-request path (``generate_codes``, prompt included), which serves a worker with one
slot: ``bench/concurrency.py``'s first audio at N = 1. A request's
first audio needs its prefill, ``first_chunk_frames`` (2) decode steps and one codec push. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.concurrency import SPEAKERS, TEXT, checkpoint  # noqa: E402

log = logging.getLogger("bench.prefill")


def timed(fn, repeats: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls (after one untimed call)."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def fast_frames(tts, frames: int) -> None:
    """One request on the single-request path (what a worker with one slot runs): prompt and ``frames`` frames."""
    from qwen_tts import SynthesisRequest

    for _ in tts.generate_codes(SynthesisRequest(TEXT, speaker=SPEAKERS[0], max_frames=frames)):
        pass


def run(args: argparse.Namespace) -> dict:
    import torch

    from qwen_tts import QwenTTS, SamplingParams, SynthesisRequest
    from qwen_tts.row_sampling import Plan
    from qwen_tts.runner import StepRunner

    if args.threads:
        torch.set_num_threads(args.threads)
    tts = QwenTTS.from_pretrained(checkpoint(args.size, args.layers), load_codec_encoder=False)
    runner = StepRunner(tts.model, args.rows, 2048, tts.options.replace(compile=False))
    params = SamplingParams()
    joins = [(row, tts.talker_inputs([SynthesisRequest(TEXT, speaker=SPEAKERS[row % len(SPEAKERS)])]), params)
             for row in range(args.rows)]  # fmt: skip
    plan = Plan.for_params([params])  # the stages the engine's eager step runs for default settings

    def step(rows: int) -> None:
        text = torch.zeros(rows, runner.bufs.hidden.shape[1])
        runner.step(rows, text, torch.full((rows, tts.config.talker_config.num_code_groups), 0.5), plan)

    result = {
        "rows": args.rows,
        "prompt_len": joins[0][1].mask.shape[1],
        "prefill_one_s": timed(lambda: runner.prefill_many(joins[:1]), args.repeats),
        "prefill_one_by_one_s": timed(lambda: [runner.prefill_many([j]) for j in joins], args.repeats),
        "prefill_one_pass_s": timed(lambda: runner.prefill_many(joins), args.repeats),
        "decode_step_1_row_s": timed(lambda: step(1), args.repeats),
        "decode_step_s": timed(lambda: step(args.rows), args.repeats),
        "fast_path_frame_s": timed(lambda: fast_frames(tts, 12), max(1, args.repeats // 4)) / 12,
    }
    result = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
    log.info("%d prompts of %d positions: one %.1f ms, one after another %.1f ms, one pass %.1f ms; "
             "decode step at 1 row %.1f ms, at %d rows %.1f ms; single-request path %.1f ms a frame", args.rows, result["prompt_len"],
             1e3 * result["prefill_one_s"], 1e3 * result["prefill_one_by_one_s"], 1e3 * result["prefill_one_pass_s"],
             1e3 * result["decode_step_1_row_s"], args.rows, 1e3 * result["decode_step_s"],
             1e3 * result["fast_path_frame_s"])  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny", choices=["tiny", "0.6b", "1.7b"])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(json.dumps(run(args)))  # the one machine-readable line


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Every GPU measurement of the project in one run (at most 8 minutes), one JSON line per figure on stdout.
#
#   bench/gpu.sh              on a CUDA machine: a full-size random 1.7B CustomVoice checkpoint, bf16
#                             (SIZES="1.7b 0.6b" adds the 0.6B one if the budget allows)
#   bench/gpu.sh --dry-run    on CPU with the tiny model (checks this script end to end in a minute or two)
#
# Figures (bench/gpu_figures.py): load, warm_up (compile time per engine), single_stream (x real time, first audio),
# single_stream_fast_path (the pre-batching path), peak_memory_one_stream (GiB), batch (8 at once), concurrent
# (32 at once: per-stream minimum x real time, p95 first audio), codec (whole and streaming x real time); then the
# fine-tuning step (bench/finetune.py). Stages that run out of the time budget print {"figure": ..., "error": ...}.
# Logs go to $OUT/gpu.log; checkpoints and the inductor cache to $OUT (default: a folder under /tmp).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-${TMPDIR:-/tmp}/qwen_tts_gpu_bench}
mkdir -p "$OUT"
LOG="$OUT/gpu.log"
START=$(date +%s)

if [[ "${1:-}" == "--dry-run" ]]; then
    # the compiled step is covered by tests/test_batch_compile.py; tracing it on a small CPU takes minutes
    DEVICE=cpu DTYPE=fp32 SIZES=${SIZES:-tiny} FRAMES=6 BATCH=2 MANY=4 BACKEND=aot_eager FT_SIZE=tiny FT_FRAMES=8
    COMPILE_FLAG=--no-compile
    BUDGET_S=${BUDGET_S:-1800}  # a loaded 2-core box needs minutes just to write the tiny checkpoint
else
    DEVICE=cuda DTYPE=bf16 SIZES=${SIZES:-1.7b} FRAMES=100 BATCH=8 MANY=32 BACKEND=inductor FT_SIZE=1.7b FT_FRAMES=100
    COMPILE_FLAG=
    BUDGET_S=${BUDGET_S:-480}  # the 8 minutes a lent GPU is given
    if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo '{"figure": "setup", "error": "no CUDA device visible to torch"}'
        exit 2
    fi
fi

left() { echo $((BUDGET_S - ($(date +%s) - START))); }

run_stage() {  # run_stage NAME COMMAND... : the command's JSON lines, or one error line when it fails or times out
    local name=$1 budget
    shift
    budget=$(left)
    if ((budget < 10)); then
        echo "{\"figure\": \"$name\", \"error\": \"skipped: the ${BUDGET_S} s budget is spent\"}"
        return
    fi
    timeout "$budget" "$@" >"$OUT/stage.out" 2>>"$LOG"
    local rc=$?
    grep '^{' "$OUT/stage.out" | while read -r line; do  # every line names its figure
        if [[ $line == *'"figure"'* ]]; then echo "$line"; else echo "{\"figure\": \"$name\", ${line#\{}"; fi
    done
    if ((rc != 0)); then
        echo "{\"figure\": \"$name\", \"error\": \"exit status $rc (124: out of time; see $LOG)\"}"
    fi
}

for SIZE in $SIZES; do
    CKPT="$OUT/ckpt_$SIZE"
    if [[ ! -f "$CKPT/config.json" ]]; then
        run_stage "build_$SIZE" "$PY" -c "
import json, sys, time
from qwen_tts.tiny import write_tiny_checkpoint
t = time.perf_counter()
write_tiny_checkpoint(sys.argv[1], 'custom_voice', size=sys.argv[2], eos='never')
print(json.dumps({'figure': 'build', 'size': sys.argv[2], 'seconds': round(time.perf_counter() - t, 1)}))
" "$CKPT" "$SIZE"
    fi
    run_stage "generation_$SIZE" "$PY" bench/gpu_figures.py --checkpoint "$CKPT" --device "$DEVICE" \
        --dtype "$DTYPE" --frames "$FRAMES" --batch "$BATCH" --many "$MANY" --cache-dir "$OUT/inductor" \
        --compile-backend "$BACKEND" $COMPILE_FLAG
done

run_stage finetune "$PY" bench/finetune.py --size "$FT_SIZE" --device "$DEVICE" --frames "$FT_FRAMES" --steps 3
echo "{\"figure\": \"total\", \"seconds\": $(($(date +%s) - START))}"

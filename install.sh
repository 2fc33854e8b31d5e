#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment at .venv and install the project into it.
#   ./install.sh          runtime dependencies (the bot, `narrator render`)
#   ./install.sh --dev    plus the test tools and the official qwen-tts oracle venv (.venv-oracle) for parity tests
#   ./install.sh --gpu    plus flash-attn (CUDA machines)
# torch: when pip can take torch 2.13.0 without a download of the CUDA build (a CPU wheel on local disk, as on CI),
# that one is installed first; everywhere else pip resolves torch normally (the CUDA build on Linux).
set -euo pipefail
cd "$(dirname "$0")"
extras=()
oracle=0
for arg in "$@"; do
  case "$arg" in
    --dev) extras+=(dev); oracle=1 ;;
    --gpu) extras+=(gpu) ;;
    --finetune) extras+=(finetune) ;;
    *) echo "install.sh: unknown option $arg (use --dev, --gpu, --finetune)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if [ "${CI:-}" = "true" ] || [ -n "${NARRATOR_CPU_TORCH:-}" ]; then
    .venv/bin/python -m pip install -q "torch==2.13.0"
  fi
fi
spec="."
if [ ${#extras[@]} -gt 0 ]; then spec=".[$(IFS=,; echo "${extras[*]}")]"; fi
.venv/bin/python -m pip install -q -e "$spec"
if [ "$oracle" = 1 ]; then
  bash tests/oracle/setup_venv.sh
fi

#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment at .venv and install the project into it.
#   ./install.sh          runtime dependencies (the bot, `narrator render`)
#   ./install.sh --cpu    the same with the CPU build of torch (~1 GB instead of ~6 GB of CUDA packages); chosen
#                         by itself when this machine has no NVIDIA driver (no nvidia-smi, no /proc/driver/nvidia)
#   ./install.sh --dev    plus the test tools and the official qwen-tts oracle venv (.venv-oracle) for parity tests
#   ./install.sh --gpu    plus flash-attn; implies the CUDA build of torch even where no driver is visible
# torch: on CI (CI=true) torch 2.13.0 is installed first from the CPU wheel on local disk, as always. The CPU route
# takes a CPU wheel pip can already see (a local index or wheel folder) and otherwise the CPU wheel from PyTorch's
# own index. Everywhere else pip resolves torch normally (the CUDA build on Linux).
set -euo pipefail
cd "$(dirname "$0")"
TORCH_VERSION=2.13.0
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
extras=()
oracle=0
cpu=0
gpu=0
for arg in "$@"; do
  case "$arg" in
    --dev) extras+=(dev); oracle=1 ;;
    --gpu) extras+=(gpu); gpu=1 ;;
    --cpu) cpu=1 ;;
    --finetune) extras+=(finetune) ;;
    *) echo "install.sh: unknown option $arg (use --cpu, --dev, --gpu, --finetune)" >&2; exit 2 ;;
  esac
done
if [ "$cpu" = 1 ] && [ "$gpu" = 1 ]; then
  echo "install.sh: --cpu and --gpu contradict each other (--gpu needs the CUDA build of torch); pick one" >&2
  exit 2
fi
if [ -n "${NARRATOR_CPU_TORCH:-}" ]; then cpu=1; fi  # the older spelling of --cpu
# Only Linux has a separate CPU build: PyPI's torch for macOS (and Windows) is CPU-only already.
detect=1
if [ "$gpu" = 1 ] || [ "$(uname -s)" != Linux ]; then detect=0; fi
if [ "$(uname -s)" != Linux ]; then cpu=0; fi

has_nvidia_driver() {
  command -v nvidia-smi >/dev/null 2>&1 || [ -e /proc/driver/nvidia ]
}

install_cpu_torch() {
  # A CPU wheel already in reach (local index, wheel folder) needs no download; else PyTorch's CPU index.
  if ! .venv/bin/python -m pip install -q "torch==${TORCH_VERSION}+cpu" 2>/dev/null; then
    .venv/bin/python -m pip install -q --index-url "$TORCH_CPU_INDEX" "torch==${TORCH_VERSION}+cpu"
  fi
}

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if [ "${CI:-}" = "true" ]; then
    .venv/bin/python -m pip install -q "torch==${TORCH_VERSION}"
  elif [ "$cpu" = 1 ]; then
    install_cpu_torch
  elif [ "$detect" = 1 ] && ! has_nvidia_driver; then
    echo "install.sh: no NVIDIA driver found (no nvidia-smi, no /proc/driver/nvidia): installing the CPU build of torch (use --gpu for the CUDA build)"
    install_cpu_torch
  fi
elif [ "$cpu" = 1 ] && [ "$(.venv/bin/python -c 'import torch; print(torch.version.cuda or "")')" != "" ]; then
  echo "install.sh: .venv already has the CUDA build of torch; remove .venv and run ./install.sh --cpu again to swap it for the CPU build"
fi
spec="."
if [ ${#extras[@]} -gt 0 ]; then spec=".[$(IFS=,; echo "${extras[*]}")]"; fi
.venv/bin/python -m pip install -q -e "$spec"
if [ "$oracle" = 1 ]; then
  bash tests/oracle/setup_venv.sh
fi

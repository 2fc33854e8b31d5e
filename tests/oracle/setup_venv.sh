#!/usr/bin/env bash
# Build (or reuse) .venv-oracle: the official qwen-tts 0.1.1 package on CPU, the numerical oracle for parity tests.
# Idempotent: skipped when .venv-oracle/.oracle-stamp holds the hash of (recipe version, python version, pins).
# Called by `./install.sh --dev` and by the parity tests' fixture; safe to run by hand or from several processes at
# once (a lock serialises them). Takes ~40-90 s cold on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-oracle
REQ=tests/oracle/requirements.txt
STAMP="$VENV/.oracle-stamp"
PY=${PYTHON:-python3}
RECIPE=1  # bump when the steps below change in a way that needs a rebuild
want=$( { echo "recipe $RECIPE"; "$PY" --version; cat "$REQ"; } | sha256sum | cut -d' ' -f1)
is_current() { [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; }
if is_current; then
  echo "setup_venv.sh: $VENV is up to date"
  exit 0
fi
# Serialise concurrent builds (two test sessions at once): lock this script, then check again.
if command -v flock >/dev/null 2>&1; then
  exec 9<"tests/oracle/setup_venv.sh"
  flock 9
fi
if is_current; then
  echo "setup_venv.sh: $VENV is up to date"
  exit 0
fi
rm -rf "$VENV"
"$PY" -m venv "$VENV"
pip_install() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"; }
# torch first: pip takes a local CPU wheel when one is available (CI); never pulls a CUDA build there.
pip_install "torch==2.13.0"
pip_install -r "$REQ"
# --no-deps: a plain install would add gradio (+~30 web packages) and a torchaudio that fails next to torch 2.13.
pip_install --no-deps "qwen-tts==0.1.1"
# Warm numba/librosa once: the first librosa.resample compiles for ~12 s and caches into site-packages.
"$VENV/bin/python" - <<'PY'
import numpy as np
import librosa

librosa.resample(np.zeros(1600, dtype=np.float32), orig_sr=16000, target_sr=24000)
librosa.filters.mel(sr=24000, n_fft=1024, n_mels=128, fmin=0, fmax=12000)
PY
# Prove the official package imports through our shim (-P: the repo root must not shadow it) before stamping.
"$VENV/bin/python" -P -c "import sys; sys.path.insert(0, 'tests/oracle'); import shim; shim.import_official()"
echo "$want" > "$STAMP"
echo "setup_venv.sh: built $VENV"

"""bench/gpu.sh end to end in its CPU dry-run mode: every stage runs and every line is one JSON figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_script_dry_run_prints_one_json_figure_per_line(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "BUDGET_S": "1800"}
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--dry-run"], env=env, capture_output=True,
                          text=True, timeout=2000, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    figures = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    names = [f["figure"] for f in figures]
    errors = [f for f in figures if "error" in f]
    assert not errors, (errors, (tmp_path / "gpu.log").read_text()[-3000:])
    for name in ("build", "load", "warm_up", "single_stream", "single_stream_fast_path", "batch", "concurrent",
                 "codec", "finetune", "total"):  # fmt: skip
        assert name in names, names
    concurrent = next(f for f in figures if f["figure"] == "concurrent")
    assert concurrent["streams"] == 4 and concurrent["first_audio_p95_s"] > 0

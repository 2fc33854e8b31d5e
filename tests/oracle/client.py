"""Test-side client for the official-package oracle (runs ``runner.py`` in ``.venv-oracle`` as a subprocess).

Our tests never import the official package: they send a batch of jobs and input tensors as files, and read back
``results.safetensors`` + ``results.json``. One subprocess call costs ~5 s of import, so tests batch their jobs.

    oracle = Oracle.ensure(workdir)
    res = oracle.run([{"id": "dec", "op": "decode", "checkpoint": str(ckpt), "args": {"codes": "codes"}}],
                     inputs={"codes": codes})
    wav = res["dec"]["wav"]
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
ORACLE_DIR = Path(__file__).resolve().parent
ORACLE_VENV = REPO_ROOT / ".venv-oracle"
SETUP_SCRIPT = ORACLE_DIR / "setup_venv.sh"
RUNNER = ORACLE_DIR / "runner.py"


class OracleError(RuntimeError):
    """The oracle subprocess failed, or one of its jobs raised inside the official package."""


class OracleResults(Mapping[str, dict[str, torch.Tensor]]):
    """Per-job output tensors (``res[job_id][name]``) and metadata (``res.meta(job_id)``)."""

    def __init__(self, tensors: dict[str, torch.Tensor], report: dict[str, Any]) -> None:
        self._report = report
        self._by_job: dict[str, dict[str, torch.Tensor]] = {job_id: {} for job_id in report}
        for key, value in tensors.items():
            job_id, _, name = key.partition("/")
            self._by_job[job_id][name] = value

    def _check(self, job_id: str) -> None:
        if job_id not in self._report:
            raise KeyError(f"no oracle job {job_id!r}; jobs: {sorted(self._report)}")
        if "error" in self._report[job_id]:
            raise OracleError(
                f"oracle job {job_id!r} failed: {self._report[job_id]['error']}\n"
                f"{self._report[job_id].get('traceback', '')}"
            )

    def __getitem__(self, job_id: str) -> dict[str, torch.Tensor]:
        self._check(job_id)
        return self._by_job[job_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._report)

    def __len__(self) -> int:
        return len(self._report)

    def meta(self, job_id: str) -> dict[str, Any]:
        self._check(job_id)
        return self._report[job_id]["meta"]


def _oracle_env() -> dict[str, str]:
    """Environment for the oracle: offline, one thread, and no PYTHONPATH that could shadow the official package."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    return env


class Oracle:
    """Runs job batches on the official qwen-tts 0.1.1 in ``.venv-oracle``; each ``run`` uses a fresh work folder."""

    def __init__(self, workdir: Path, python: Path = ORACLE_VENV / "bin" / "python") -> None:
        if not python.exists():
            raise OracleError(f"{python} not found; build it with `bash {SETUP_SCRIPT.relative_to(REPO_ROOT)}`")
        self.python = python
        self.workdir = Path(workdir)
        self._calls = 0

    @classmethod
    def ensure(cls, workdir: Path) -> Oracle:
        """Build ``.venv-oracle`` if missing or stale (cached by a stamp, ~1.5 min cold), then return an Oracle."""
        started = time.perf_counter()
        # no PYTHONPATH for the build either: its final check imports the official package and our tree would shadow it
        proc = subprocess.run(
            ["bash", str(SETUP_SCRIPT)], cwd=REPO_ROOT, env=_oracle_env(), capture_output=True, text=True, timeout=1200
        )
        if proc.returncode != 0:
            raise OracleError(
                f"setup_venv.sh failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
        log.info("oracle venv ready in %.1f s", time.perf_counter() - started)
        return cls(workdir)

    def run(
        self, jobs: Sequence[dict[str, Any]], inputs: Mapping[str, torch.Tensor] | None = None, timeout: float = 900
    ) -> OracleResults:
        """Run ``jobs`` (dicts with id, op, checkpoint, args) in one oracle process; tensors in ``inputs`` are
        referenced from job args by name. Raises OracleError if the process itself fails."""
        ids = [job["id"] for job in jobs]
        if len(set(ids)) != len(ids) or any("/" in i for i in ids):
            raise ValueError(f"job ids must be unique and contain no '/': {ids}")
        self._calls += 1
        call_dir = self.workdir / f"call{self._calls:03d}"
        call_dir.mkdir(parents=True, exist_ok=True)
        request: dict[str, Any] = {"jobs": [{**job, "checkpoint": str(job["checkpoint"])} for job in jobs]}
        if inputs:
            save_file({k: v.detach().cpu().contiguous() for k, v in inputs.items()}, call_dir / "inputs.safetensors")
            request["inputs"] = str(call_dir / "inputs.safetensors")
        (call_dir / "request.json").write_text(json.dumps(request, indent=1))
        started = time.perf_counter()
        proc = subprocess.run(
            [str(self.python), str(RUNNER), str(call_dir / "request.json"), str(call_dir / "out")],
            cwd=call_dir,
            env=_oracle_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        log.info("oracle call %d (%d jobs) took %.1f s", self._calls, len(jobs), time.perf_counter() - started)
        report_path = call_dir / "out" / "results.json"
        if proc.returncode != 0 or not report_path.exists():
            raise OracleError(f"oracle runner failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
        report = json.loads(report_path.read_text())
        return OracleResults(load_file(call_dir / "out" / "results.safetensors"), report)

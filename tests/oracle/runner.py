"""Oracle runner: executes a batch of jobs on the official ``qwen_tts`` package inside ``.venv-oracle``.

Usage (from our test process, see ``client.py``)::

    .venv-oracle/bin/python -P tests/oracle/runner.py REQUEST.json OUT_DIR

REQUEST.json::

    {"inputs": "inputs.safetensors" | null,          # tensors referenced by name from job args
     "jobs": [{"id": "cv_prompt", "op": "prompt", "checkpoint": DIR, "args": {...}}, ...]}
                                                      # a job may add "dtype": "bfloat16" (model ops; float32 default)

Ops: prompt, generate, decode, encode, reference, xvector, save (see ``official_ops.py``). ``checkpoint`` is a model dir
(loaded with ``Qwen3TTSModel.from_pretrained``) or, for decode/encode only, a ``speech_tokenizer`` dir (loaded with
``Qwen3TTSTokenizer.from_pretrained``). Models are loaded once per directory per run.

Writes OUT_DIR/results.safetensors (tensor ``"{job_id}/{name}"``) and OUT_DIR/results.json
(``{job_id: {"meta": {...}}}`` or ``{job_id: {"error": "..."}}``). stdout stays quiet; logs go to stderr.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

log = logging.getLogger("oracle.runner")

MODEL_OPS = ("prompt", "generate", "xvector", "save", "weights_check")
CODEC_OPS = ("decode", "encode", "reference")
STANDALONE_OPS = ("tokenize",)  # need no loaded checkpoint


class _Loader:
    """Loads each checkpoint once: full model wrappers for model ops, bare speech tokenizers for codec ops."""

    def __init__(self) -> None:
        self._models: dict[str, Any] = {}
        self._codecs: dict[str, Any] = {}

    def model(self, path: str, dtype: str = "float32") -> Any:
        key = path if dtype == "float32" else f"{path}@{dtype}"
        if key not in self._models:
            import torch

            from qwen_tts import Qwen3TTSModel

            started = time.perf_counter()
            torch_dtype = getattr(torch, dtype)
            self._models[key] = Qwen3TTSModel.from_pretrained(path, dtype=torch_dtype, device_map="cpu")
            log.info("loaded model %s (%s) in %.2f s", path, dtype, time.perf_counter() - started)
        return self._models[key]

    def codec(self, path: str) -> Any:
        if path in self._models:
            return self._models[path].model.speech_tokenizer
        if path not in self._codecs:
            from qwen_tts import Qwen3TTSTokenizer

            codec_dir = Path(path) / "speech_tokenizer" if (Path(path) / "speech_tokenizer").is_dir() else Path(path)
            self._codecs[path] = Qwen3TTSTokenizer.from_pretrained(str(codec_dir), device_map="cpu")
        return self._codecs[path]


def _run_job(loader: _Loader, job: dict[str, Any], inputs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    import official_ops

    op = job["op"]
    if op not in MODEL_OPS + CODEC_OPS + STANDALONE_OPS:
        raise ValueError(f"unknown op {op!r}; allowed: {MODEL_OPS + CODEC_OPS + STANDALONE_OPS}")
    if op in STANDALONE_OPS:
        target = None
    elif op in CODEC_OPS:
        target = loader.codec(job["checkpoint"])
    else:
        target = loader.model(job["checkpoint"], job.get("dtype", "float32"))
    args = dict(job.get("args", {}))
    if op in ("save", "weights_check"):
        args.setdefault("source", job["checkpoint"])
    return getattr(official_ops, f"op_{op}")(target, args, inputs)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="[oracle] %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    request = json.loads(Path(argv[1]).read_text())
    out_dir = Path(argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)

    import shim

    shim.import_official()
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    from safetensors.torch import load_file, save_file

    # One thread: identical numbers across machines (2 threads shift waveforms by ~5e-6) and faster at tiny sizes.
    torch.set_num_threads(int(os.environ.get("ORACLE_THREADS", "1")))
    inputs = load_file(request["inputs"]) if request.get("inputs") else {}
    loader = _Loader()
    tensors: dict[str, torch.Tensor] = {}
    results: dict[str, Any] = {}
    for job in request["jobs"]:
        started = time.perf_counter()
        try:
            out, meta = _run_job(loader, job, inputs)
        except Exception as exc:  # one failing job must not hide the results of the others
            results[job["id"]] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            log.error("job %s failed: %s", job["id"], exc)
            continue
        for name, value in out.items():
            tensors[f"{job['id']}/{name}"] = value.detach().cpu().contiguous().clone()  # clone: no shared storage
        results[job["id"]] = {"meta": meta, "seconds": round(time.perf_counter() - started, 3)}
    save_file(tensors, str(out_dir / "results.safetensors"))
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

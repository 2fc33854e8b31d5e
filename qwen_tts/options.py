"""Run-time switches of a loaded model, in one frozen object, and the one place qwen_tts reads its own environment.

    opts = RuntimeOptions(device="cuda", dtype=torch.bfloat16, compile=True, compile_cache_dir="data/inductor")
    tts = QwenTTS.from_pretrained(path, options=opts)
    tts.options.compile, tts.speed_path_active

The caller (the bot) builds the options from its own settings; qwen_tts never reads a bot variable. Its own
environment switches are operator kill switches and override what the caller asked for, all with one rule
(``with_env``): a boolean is on for 1/true/yes/on, off for unset/empty/0/false/no/off, anything else is refused with
a sentence naming the variable; a count is a positive integer.

- ``QWEN_TTS_EAGER=1``: generate with the eager modules only (the numerical reference), no compiled step.
- ``QWEN_TTS_NO_COMPILE=1`` (``QWEN_TTS_NO_CUDA_GRAPH=1`` is the older name): keep the eager step, no torch.compile.
- ``QWEN_TTS_CPU_THREADS=N``: cap torch's intra-op threads while a CPU model computes a step.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch

EAGER_ENV = "QWEN_TTS_EAGER"
NO_COMPILE_ENV = ("QWEN_TTS_NO_COMPILE", "QWEN_TTS_NO_CUDA_GRAPH")
CPU_THREADS_ENV = "QWEN_TTS_CPU_THREADS"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}  # fmt: skip


@dataclass(frozen=True)
class RuntimeOptions:
    """How a checkpoint runs: where, in which precision, and on which path.

    ``compile`` asks for the speed path: the batched decode step compiled with ``torch.compile(fullgraph=True)``
    (on CUDA with ``mode="reduce-overhead"``, i.e. CUDA graphs), compiled during ``warm_up`` and cached by inductor in
    ``compile_cache_dir`` (None: inductor's default). ``eager`` forces the eager reference modules everywhere.
    ``cpu_threads`` caps torch's threads while a CPU model computes a step (1 is fastest for small models).
    """

    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    compile: bool = False
    eager: bool = False
    cpu_threads: int | None = None
    compile_cache_dir: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", str(torch.device(self.device)))
        object.__setattr__(self, "dtype", parse_dtype(self.dtype))
        if self.cpu_threads is not None and (not isinstance(self.cpu_threads, int) or self.cpu_threads < 1):
            raise ValueError(f"cpu_threads must be a positive integer or None, got {self.cpu_threads!r}")
        if self.compile_cache_dir is not None:
            object.__setattr__(self, "compile_cache_dir", str(self.compile_cache_dir))

    @property
    def wants_compiled_step(self) -> bool:
        """The speed path is asked for and not vetoed by ``eager``."""
        return self.compile and not self.eager

    @property
    def is_cuda(self) -> bool:
        return torch.device(self.device).type == "cuda"

    def replace(self, **changes) -> RuntimeOptions:
        return dataclasses.replace(self, **changes)


def parse_dtype(value: torch.dtype | str) -> torch.dtype:
    """A torch dtype or one of its names (float32/fp32, bfloat16/bf16, float16/fp16)."""
    if isinstance(value, torch.dtype):
        return value
    key = str(value).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {value!r}")
    return _DTYPES[key]


def env_flag(name: str, environ: Mapping[str, str]) -> bool:
    value = environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name} must be one of 1/true/yes/on or 0/false/no/off, got {environ[name]!r}")


def env_count(name: str, environ: Mapping[str, str]) -> int | None:
    value = environ.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def with_env(options: RuntimeOptions, environ: Mapping[str, str] | None = None) -> RuntimeOptions:
    """``options`` with qwen_tts's own switches from the environment applied on top (they are kill switches)."""
    env = os.environ if environ is None else environ
    changes: dict = {}
    if env_flag(EAGER_ENV, env):
        changes["eager"] = True
    if any(env_flag(name, env) for name in NO_COMPILE_ENV):
        changes["compile"] = False
    threads = env_count(CPU_THREADS_ENV, env)
    if threads is not None:
        changes["cpu_threads"] = threads
    return options.replace(**changes) if changes else options

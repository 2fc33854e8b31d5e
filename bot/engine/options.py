"""`EngineOptions`: every switch of the local engine in one object, built once from the settings and passed down.

The model library reads none of the bot's variables; the bot reads NARRATOR_* here and hands the values to
`qwen_tts` explicitly (`LocalEngine` turns them into `qwen_tts.RuntimeOptions`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.settings import Settings


@dataclass(frozen=True)
class EngineOptions:
    custom_voice_model: str
    base_model: str | None = None  # speaker encoder: cloning, locking designed voices, the drift guard
    design_model: str | None = None  # only to design voices
    device: str = "auto"  # auto | cpu | cuda | cuda:N (one engine per device)
    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bfloat16 | float16 | float32
    speed_path: bool = True  # compiled decode step / CUDA graphs on GPU (NARRATOR_COMPILE); False: the kill switch
    eager: bool = False  # the plain eager modules, the numerical reference (QWEN_TTS_EAGER for the library alone)
    cpu_threads: int | None = None  # torch intra-op threads during generation steps; None: torch's default
    max_loaded: int = 4  # checkpoints kept in memory (fine-tuned voices each bring one)
    max_streams: int = 1  # renders served at once (rows of the batched decode step); 1: one at a time, unbatched
    first_chunk_frames: int = 2  # first chunk of a render: small, for latency
    chunk_frames: int = 16  # later chunks: bigger, cheaper
    warm_up: bool = True  # load and run one short generation per checkpoint at start
    cache_dir: Path | None = None  # compiler caches (inductor) live here, e.g. <data dir>/compile

    def __post_init__(self) -> None:
        if self.max_loaded < 1:
            raise ValueError(f"max_loaded must be >= 1 checkpoint, got {self.max_loaded}")
        if self.first_chunk_frames < 1 or self.chunk_frames < 1:
            raise ValueError(f"chunk sizes must be >= 1 frame, got {self.first_chunk_frames} and {self.chunk_frames}")
        if self.max_streams < 1:
            raise ValueError(f"max_streams must be >= 1, got {self.max_streams}")

    @classmethod
    def from_settings(cls, settings: Settings, device: str | None = None) -> EngineOptions:
        return cls(
            custom_voice_model=settings.custom_voice_model,
            base_model=settings.base_model,
            design_model=settings.voice_design_model,
            device=device or settings.device,
            dtype=settings.dtype,
            speed_path=settings.compile,
            max_streams=settings.max_batch or default_streams(device or settings.device),
            cache_dir=settings.data_dir / "compile",
        )

    def on(self, device: str) -> EngineOptions:
        return replace(self, device=device)


GPU_KV_BUDGET = 0.25  # share of a GPU's memory the KV caches of the batch rows may take by default
MAX_DEFAULT_STREAMS = 32


def default_streams(device: str) -> int:
    """NARRATOR_MAX_BATCH=0: on a GPU, the rows whose KV caches (2048 positions each, 1.7B bf16: 224 MiB a row) fit
    a quarter of its memory, at most 32 (an H100's 80 GB: 32; a 24 GB card: 26; 8 GB: 8); on the CPU one render at a
    time, since CPU steps are compute-bound and extra rows only slow every listener down."""
    if device == "cpu" or not device.startswith(("cuda", "auto")):
        return 1
    import torch

    if not torch.cuda.is_available():
        return 1
    index = int(device.partition(":")[2] or 0)
    total = torch.cuda.get_device_properties(index).total_memory
    row_bytes = 224 * 1024 * 1024
    return max(1, min(MAX_DEFAULT_STREAMS, int(total * GPU_KV_BUDGET // row_bytes)))


def engine_devices(device: str) -> list[str]:
    """One engine per GPU: `auto` means every visible CUDA device (or the CPU when there is none)."""
    if device != "auto":
        return [device]
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(count)] or ["cpu"]

"""The seam between the Discord services and the narration engine (`bot.narration`): the only module here that
imports it. Services see four calls and three event types:

- `await plan(script, max_chars, voice, resolve)` -> Plan: parse the script (ScriptError -> UserError naming the
  position) and resolve every identity it needs (`voice` for the narrator, `resolve(name)` for `[@name]`).
- `render(worker, settings, plan, cancel_event)`: async iterator of `Chunk` (24 kHz float32 audio, yielded while
  frames are generated), `Progress` (segment k of n, elapsed, ETA) and one final `Finished` (master path, seconds).
- `await embed_reference(worker, audio, sr)` -> x-vector; `await design(worker, description)` -> `Designed`.

Engines are cached per worker (`worker.engines`) and loaded on first use on the worker's device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Chunk:
    audio: np.ndarray  # (n,) float32, 24 kHz mono


@dataclass(frozen=True)
class Progress:
    segment: int  # 1-based
    total: int
    elapsed_s: float
    eta_s: float | None


@dataclass(frozen=True)
class Finished:
    master_path: Path
    audio_seconds: float


@dataclass(frozen=True)
class Designed:
    audio: np.ndarray  # (n,) float32 anchor clip
    sample_rate: int
    vector: np.ndarray  # (hidden,) float32 x-vector
    seed: int

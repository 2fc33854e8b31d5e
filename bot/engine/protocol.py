"""The engine seam: the one typed way `bot/` reaches a speech model.

An `Engine` turns "a piece of speech + a locked timbre" into a stream of 24 kHz float32 chunks, computes x-vectors
and reference codes, renders a voice-design anchor clip and describes its checkpoints. `LocalEngine`
(bot/engine/local.py) drives our `qwen_tts` on this machine; a remote engine speaks HTTP to `narrator serve`; the
tests drive the services through a scripted engine. Nothing else in `bot/` imports the model.

Threading contract: every method blocks, and any method may be called from several threads at once (each render runs
on its own compute thread; an engine that batches, like the local one with continuous batching, serves them as rows
of one decode step). None of them may run on the event loop.

Requests are plain values (strings, tuples of floats, ints) so a remote engine can send them as JSON unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


class EngineError(Exception):
    """The engine cannot do what was asked (a model is missing, a checkpoint is broken, a server is down).
    `str(error)` is one sentence that says what to do; the services show it to users as is."""


@dataclass(frozen=True)
class AudioFormat:
    """What the engine's audio looks like, read from the codec's config (never hard-coded elsewhere in bot/)."""

    sample_rate: int  # Hz, 24_000 for the released 12 Hz codec
    samples_per_frame: int  # waveform samples per code frame, 1920
    frame_rate: float  # code frames per second, 12.5

    def frames_for(self, seconds: float) -> int:
        return int(round(seconds * self.frame_rate))


@dataclass(frozen=True)
class SpeechRequest:
    """One piece of speech in one locked voice. The timbre is fixed by (`model`, `speaker`, `vector`); `instruct`
    only changes the delivery (emotion tags). `ref_codes` + `ref_text` select in-context cloning (ICL): `model` is
    then a Base checkpoint, `vector` the reference clip's x-vector, and the render continues the clip."""

    text: str
    model: str  # the checkpoint that renders it (the CustomVoice one, or a fine-tuned voice's own)
    language: str = "auto"
    speaker: str | None = None  # a preset / fine-tuned speaker of `model`
    vector: tuple[float, ...] | None = None  # timbre at the speaker position (an x-vector); None: `speaker`'s row
    instruct: str | None = None
    seed: int = 0
    max_frames: int = 0  # hard cap on code frames (frame_rate per second); 0: the engine's own length cap
    latency_critical: bool = True  # nothing is playing yet: small first chunks (else big ones, cheaper)
    route: str | None = None  # routing key (the guild id): a remote engine sends one guild's renders to one server
    ref_codes: tuple[tuple[int, ...], ...] | None = None  # (frames, 16) codec codes of the reference clip (ICL)
    ref_text: str | None = None  # the words spoken in that clip (ICL)


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint is, for voice imports, `narrator voices speakers` and validation before queueing."""

    model: str
    model_type: str  # custom_voice | voice_design | base
    speakers: tuple[str, ...]
    languages: tuple[str, ...]
    supports_instruct: bool
    hidden_size: int  # width of an x-vector / speaker row


@dataclass(frozen=True)
class Capabilities:
    """What this engine can do; the bot states at start what a backend lacks."""

    speaker_encoder: bool  # xvector() works: cloning, locking designed voices, the drift guard
    voice_design: bool  # design_clip() works
    seeds: bool = True  # the same request and seed give the same audio
    max_streams: int = 1  # renders served at once (rows of the batch)
    notes: tuple[str, ...] = field(default=())


@runtime_checkable
class Engine(Protocol):
    audio: AudioFormat
    capabilities: Capabilities

    def start(self) -> None:
        """Load (and warm up) every checkpoint this engine will need, so the first render pays no load time.
        Raises EngineError naming the checkpoint or device that is unusable."""
        ...

    def close(self) -> None: ...

    def stream(self, request: SpeechRequest, stop: Callable[[], bool]) -> Iterator[np.ndarray]:
        """(n,) float32 chunks at `audio.sample_rate` while frames are generated; ends early once `stop()` is true."""
        ...

    def xvector(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        """(hidden,) float32 x-vector of `audio`, or None when the engine has no speaker encoder."""
        ...

    def reference_codes(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        """(frames, 16) int64 codec codes of a reference clip for in-context cloning, or None when the engine cannot
        clone in context (no Base checkpoint here)."""
        ...

    def design_clip(self, description: str, text: str, language: str, seed: int, max_frames: int) -> np.ndarray:
        """(n,) float32 anchor clip of `text` spoken by a voice designed from `description`."""
        ...

    def checkpoint(self, model: str | None = None) -> CheckpointInfo:
        """Describe `model` (default: the CustomVoice checkpoint that renders presets)."""
        ...

    def speaker_row(self, model: str, speaker: str) -> np.ndarray:
        """(hidden,) float32 embedding row of a preset / fine-tuned speaker (the locked timbre of an imported voice)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Models, device and dtype, for sidecars and the ETA key."""
        ...

    @property
    def custom_voice_model(self) -> str: ...

"""A scripted `Engine`: a second implementation of the seam, standing in for a model host we do not run in a test (a
remote server, a GPU). Deterministic audio from the request (a tone whose pitch comes from the timbre and whose length
from the text), x-vectors from the audio's spectrum, and a record of every call, so tests can drive the real
services (say, voice library, cloning, design) end to end and check what crossed the seam.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bot.engine.protocol import AudioFormat, Capabilities, CheckpointInfo, SpeechRequest

RATE = 24_000
HIDDEN = 16
CHARS_PER_SECOND = 15.0


@dataclass
class ScriptedEngine:
    speakers: tuple[str, ...] = ("aiden", "serena")
    model: str = "scripted/custom-voice"
    chunk_seconds: float = 0.08
    fail_with: Exception | None = None  # raised by the next stream(), like a model error
    fail_after_chunks: int = 0  # with fail_with: raised after this many chunks of audio (a failure mid-render)
    compute_per_audio_s: float = 0.0  # synthetic speed: wall seconds spent per second of audio streamed (0: instant)
    shared_compute: bool = False  # the streams share one device: each is as many times slower as streams run at once
    started: bool = False
    requests: list[SpeechRequest] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    audio: AudioFormat = field(default_factory=lambda: AudioFormat(RATE, 1920, 12.5))
    capabilities: Capabilities = field(default_factory=lambda: Capabilities(True, True, notes=("scripted",)))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _streaming: int = 0

    @property
    def custom_voice_model(self) -> str:
        return self.model

    def start(self) -> None:
        self._record("start")
        self.started = True

    def close(self) -> None:
        self._record("close")

    def describe(self) -> dict[str, Any]:
        return {"engine": "scripted", "custom_voice_model": self.model, "device": "none", "dtype": "none"}

    def checkpoint(self, model: str | None = None) -> CheckpointInfo:
        self._record("checkpoint")
        return CheckpointInfo(model or self.model, "custom_voice", self.speakers, ("auto", "english"), True, HIDDEN)

    def speaker_row(self, model: str, speaker: str) -> np.ndarray:
        return _vector_from_seed(zlib.crc32(speaker.encode()))

    def stream(self, request: SpeechRequest, stop: Callable[[], bool]) -> Iterator[np.ndarray]:
        with self._lock:
            self.requests.append(request)
            error, self.fail_with = self.fail_with, None
        if error is not None and not self.fail_after_chunks:
            raise error
        seconds = max(0.2, len(request.text) / CHARS_PER_SECOND)
        if request.max_frames:
            seconds = min(seconds, request.max_frames / self.audio.frame_rate)
        tone = _tone(_pitch(request), seconds)
        step = int(self.chunk_seconds * RATE)
        with self._lock:
            self._streaming += 1
        try:
            for index, start in enumerate(range(0, len(tone), step)):
                if stop():
                    return
                if error is not None and index == self.fail_after_chunks:
                    raise error
                chunk = tone[start : start + step]
                if self.compute_per_audio_s:
                    sharing = self._streaming if self.shared_compute else 1
                    time.sleep(self.compute_per_audio_s * sharing * len(chunk) / RATE)
                yield chunk
        finally:
            with self._lock:
                self._streaming -= 1

    def xvector(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        self._record("xvector")
        spectrum = np.abs(np.fft.rfft(np.asarray(audio, np.float32)[: RATE // 2], n=2 * HIDDEN))[:HIDDEN]
        norm = float(np.linalg.norm(spectrum)) or 1.0
        return (spectrum / norm).astype(np.float32)

    def reference_codes(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        self._record("reference_codes")
        return None  # no codec: in-context cloning is not scripted

    def design_clip(self, description: str, text: str, language: str, seed: int, max_frames: int) -> np.ndarray:
        self._record("design_clip")
        return _tone(200.0 + zlib.crc32(description.encode()) % 200, 1.5)

    def _record(self, name: str) -> None:
        with self._lock:
            self.calls.append(name)


def _pitch(request: SpeechRequest) -> float:
    if request.vector is not None:
        return 150.0 + 300.0 * abs(float(request.vector[0]))
    return 150.0 + zlib.crc32((request.speaker or "").encode()) % 300


def _tone(hz: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE), dtype=np.float32) / RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _vector_from_seed(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(HIDDEN).astype(np.float32)

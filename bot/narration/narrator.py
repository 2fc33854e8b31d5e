"""`Narrator`: the async face of narration, used by the bot's inference worker and by `narrator render`.

Model work never runs on the event loop: `compute(fn, *args)` (the worker's `InferenceWorker.compute`, or this
narrator's own single thread) runs each blocking step, and a render is one such step (`production.Production`)
whose events come back through `loop.call_soon_threadsafe` as they happen. Cancellation: setting `cancel`,
cancelling the consuming task or leaving the `async for` makes `render` stop yielding at once (the next await), and
the compute thread stops at its next frame.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from bot.engine.protocol import Engine
from bot.narration.eta import EtaStore, RenderEta, eta_key
from bot.narration.identity import DriftGuard, Identity, VoiceLock
from bot.narration.production import (
    AudioChunk,
    Finished,
    Production,
    Progress,
    RenderEvent,
    RenderOptions,
    Stopped,
)
from bot.narration.script import Pause, Script, Speech, estimate_seconds

log = logging.getLogger(__name__)

__all__ = ["AudioChunk", "Finished", "Narrator", "Progress", "RenderEvent"]

T = TypeVar("T")
Compute = Callable[..., Awaitable[Any]]
CANCEL_POLL_S = 0.05  # how often a waiting render looks at `cancel` (well inside the 200 ms budget)
ANCHOR_TEXTS = {
    "auto": "Hello! This is my voice. I love telling stories, reading the news, and sharing a good poem.",
    "chinese": "你好！这是我的声音。我喜欢讲故事，读新闻，也喜欢和大家分享一首好诗。",
}
ANCHOR_MAX_FRAMES = 125  # 10 s: enough speech for a stable x-vector
_END = object()
# Audio handed from the compute thread to the consumer but not yet taken: past this the production waits, so a
# consumer that waits for its listeners (voice backpressure) holds the render instead of letting events pile up.
MAX_IN_FLIGHT_S = 5.0


class Narrator:
    def __init__(
        self,
        engine: Engine,
        *,
        outputs_dir: Path | None = Path("outputs"),
        compute: Compute | None = None,
        eta_path: Path | None = None,
        guard: DriftGuard | None = None,
        fade_ms: float = 10.0,
    ) -> None:
        self.engine = engine
        self.outputs_dir = None if outputs_dir is None else Path(outputs_dir)
        self.guard = guard if guard is not None else DriftGuard()
        self.eta_store = EtaStore(eta_path)
        self.fade_ms = fade_ms
        self._executor: ThreadPoolExecutor | None = None
        self._compute = compute if compute is not None else self._own_thread
        self._rendering = 0  # renders in progress: the rows sharing the engine's decode step (the ETA's load)

    async def _own_thread(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="narrator-compute")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        """Release this narrator's own compute thread (not a worker's); waits for a running step to end."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # -- rendering ---------------------------------------------------------------------------------------------------

    @staticmethod
    def plan(script: Script, voices: Mapping[str | None, Identity]) -> list[tuple[Speech | Pause, Identity | None]]:
        """Pair every item with its identity; ValueError names a voice the script uses but `voices` lacks."""
        by_name = {None if k is None else k.strip().lower(): v for k, v in voices.items()}
        plan: list[tuple[Speech | Pause, Identity | None]] = []
        for item in script.items:
            if isinstance(item, Pause):
                plan.append((item, None))
                continue
            key = None if item.voice is None else item.voice.lower()
            if key not in by_name:
                who = "the narrator (key None)" if key is None else f"`[@{item.voice}]`"
                raise ValueError(f"no identity given for {who}; pass it in `voices`")
            plan.append((item, by_name[key]))
        return plan

    async def render(
        self,
        script: Script,
        voices: Mapping[str | None, Identity],
        *,
        job_id: object | None = None,
        cancel: threading.Event | None = None,
        max_frames: int | None = None,
        keep_master: bool = True,
        max_job_seconds: float | None = None,
        sidecar_extra: Mapping[str, Any] | None = None,
        route: str | None = None,
    ) -> AsyncIterator[RenderEvent]:
        """AudioChunk / Progress events as they happen, then one Finished (none when cancelled)."""
        plan = self.plan(script, voices)
        # max_frames caps each segment; max_job_seconds the frames of the whole render (FrameBudgetExceeded once
        # spent, drift-guard attempts included).
        options = RenderOptions(
            self.outputs_dir if keep_master else None,
            self.guard,
            self.fade_ms,
            max_frames,
            max_job_seconds,
            route=route,
        )
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        closed = threading.Event()

        def stop() -> bool:
            return closed.is_set() or (cancel is not None and cancel.is_set())

        in_flight = _InFlight(lambda: int(MAX_IN_FLIGHT_S * self.engine.audio.sample_rate))

        def emit(event: RenderEvent) -> None:
            if isinstance(event, AudioChunk):
                in_flight.put(len(event.audio), stop)  # blocks while the consumer is behind (voice backpressure)
            if not stop():
                loop.call_soon_threadsafe(events.put_nowait, event)

        production = Production(self.engine, script, plan, options, self.eta_store, emit, stop, job_id,
                                sidecar_extra=sidecar_extra, load=lambda: self._rendering)  # fmt: skip
        self._rendering += 1
        task = asyncio.ensure_future(self._compute(production.run))
        task.add_done_callback(lambda _: events.put_nowait(_END))
        task.add_done_callback(self._rendered)
        raised = False
        try:
            while (event := await _next_event(events, stop)) is not _END:
                if isinstance(event, AudioChunk):
                    in_flight.take(len(event.audio))
                yield event
                if isinstance(event, Finished):
                    break
            if not stop() and task.done() and not task.cancelled() and task.exception() is not None:
                raised = True
                raise task.exception()  # the production failed: the caller sees its error
        finally:
            closed.set()
            if not raised:  # an error the caller already got is not "abandoned": no second report with a traceback
                task.add_done_callback(_retrieve)  # a late error of an abandoned production is logged, not lost

    def _rendered(self, _task: asyncio.Future) -> None:
        self._rendering -= 1  # when the production ends (on the loop), not when its consumer stops listening

    def load(self) -> int:
        """The rows a render started now would share the decode step with, itself included (at most the engine's
        rows: past them it waits for a row, and then runs at a full batch)."""
        return max(1, min(self._rendering + 1, self.engine.capabilities.max_streams))

    def predict_seconds(self, script: Script) -> float:
        """Smart ETA before rendering: predicted compute seconds from the text and the stored speed of this model on
        this device at the current load (first call reads the small ETA file; a first guess of real time when nothing
        was measured)."""
        units = sum(estimate_seconds(s.text) for s in script.speeches)
        rate = self.eta_store.rate(eta_key(self.engine.describe()), self.load())
        return RenderEta(units, rate).remaining_s(0.0, 0.0)

    # -- identities --------------------------------------------------------------------------------------------------

    async def speakers(self, model: str | None = None) -> list[str]:
        """The preset speakers (lower-case) of `model` (default: the CustomVoice checkpoint); loads it if needed."""
        return await self._compute(_speakers_of, self.engine, model or self.engine.custom_voice_model) or []

    async def preset_voice(self, speaker: str, *, language: str = "auto", seed: int = 0, name: str | None = None,
                           model: str | None = None) -> Identity:  # fmt: skip
        """Lock a preset speaker (its embedding row, by name) of the CustomVoice checkpoint, or of `model`, a
        fine-tuned checkpoint (kind "finetuned"; it is loaded on first use like any other)."""
        kind = "preset" if model is None or model == self.engine.custom_voice_model else "finetuned"
        model = model or self.engine.custom_voice_model
        speakers = await self._compute(_speakers_of, self.engine, model)
        if speakers is not None and speaker.lower() not in speakers:
            raise ValueError(f"unknown speaker {speaker!r}; this checkpoint has {', '.join(speakers) or 'none'}")
        return Identity(name or speaker, kind, model, speaker=speaker.lower(), language=language, seed=seed)

    async def design_voice(
        self, description: str, name: str, *, language: str = "auto", seed: int = 0,
        anchor_text: str | None = None, max_frames: int = ANCHOR_MAX_FRAMES,
    ) -> VoiceLock:  # fmt: skip
        """Design from `description` and lock at once: one anchor clip (VoiceDesign), its x-vector (Base encoder)."""
        description = " ".join(description.split())
        if not description:
            raise ValueError("describe the voice, e.g. 'a warm, low male voice, calm and slow'")
        text = anchor_text or ANCHOR_TEXTS.get(language.lower(), ANCHOR_TEXTS["auto"])
        clip, vector, rate = await self._compute(self._design_step, description, text, language, seed, max_frames)
        identity = Identity(name, "designed", self.engine.custom_voice_model, vector=vector, language=language,
                            seed=seed, description=description)  # fmt: skip
        return VoiceLock(identity, clip, rate)

    def _design_step(self, description: str, text: str, language: str, seed: int, max_frames: int):
        clip = self.engine.design_clip(description, text, language, seed, max_frames)
        rate = self.engine.audio.sample_rate
        return clip, self._require_xvector(clip, rate), rate

    async def clone_voice(self, audio: np.ndarray, sample_rate: int, transcript: str, name: str, *,
                          language: str = "auto", seed: int = 0, ref_clip: str | None = None) -> VoiceLock:  # fmt: skip
        """Lock a voice cloned from a reference clip: its x-vector drives the CustomVoice checkpoint."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if len(audio) < sample_rate // 2:
            raise ValueError(f"the reference clip is {len(audio) / sample_rate:.2f} s long; give at least 0.5 s")
        vector = await self._compute(self._require_xvector, audio, sample_rate)
        identity = Identity(name, "cloned", self.engine.custom_voice_model, vector=vector, language=language,
                            seed=seed, transcript=transcript.strip() or None, ref_clip=ref_clip)  # fmt: skip
        return VoiceLock(identity, audio, sample_rate)

    async def xvector(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """(hidden,) float32 x-vector of a clip (Base speaker encoder), on the compute thread."""
        return await self._compute(self._require_xvector, np.asarray(audio, dtype=np.float32), sample_rate)

    def _require_xvector(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        vector = self.engine.xvector(audio, sample_rate)
        if vector is None:
            raise ValueError("locking a voice needs a Base checkpoint's speaker encoder: set NARRATOR_BASE_MODEL")
        return vector


def _speakers_of(engine: Engine, model: str) -> list[str]:
    return [s.lower() for s in engine.checkpoint(model).speakers]


class _InFlight:
    """Samples emitted by the compute thread and not yet taken by the consumer, bounded (thread-safe). The bound is
    read on the compute thread at the first chunk (the engine's format may need its checkpoint)."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit_of, self.limit, self.count = limit, 0, 0
        self._changed = threading.Condition()

    def put(self, samples: int, stop: Callable[[], bool]) -> None:
        if not self.limit:
            self.limit = self._limit_of()
        with self._changed:
            while self.count > 0 and self.count + samples > self.limit and not stop():
                self._changed.wait(CANCEL_POLL_S)  # wakes on `take`, or to look at `stop` again
            self.count += samples

    def take(self, samples: int) -> None:
        with self._changed:
            self.count -= samples
            self._changed.notify_all()


async def _next_event(events: asyncio.Queue, stop: Callable[[], bool]) -> object:
    """The next event, or _END as soon as `stop()` is true (checked every CANCEL_POLL_S while waiting)."""
    if stop():
        return _END
    getter = asyncio.ensure_future(events.get())
    try:
        while True:
            done, _ = await asyncio.wait({getter}, timeout=CANCEL_POLL_S)
            if done:
                return _END if stop() else getter.result()
            if stop():
                return _END
    finally:
        if not getter.done():
            getter.cancel()


def _retrieve(task: asyncio.Future) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None and not isinstance(error, Stopped):
        log.error("an abandoned render failed", exc_info=error)

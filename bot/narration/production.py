"""The thread side of a render: segments -> engine -> drift guard -> joins -> master + events. Blocking by design.

`Production.run()` executes on the inference worker's compute thread. It hands every event to `emit` (which the async
side turns into a thread-safe hand-off to the event loop) the moment it exists, so audio is out while later frames
are still being generated. `stop()` is checked at every frame (inside the engine) and between steps; once it is true
the production ends, deletes its partial master and emits nothing more.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bot.engine.protocol import Engine, SpeechRequest
from bot.narration import emotions
from bot.narration.eta import EtaStore, RenderEta, eta_key
from bot.narration.identity import DriftGuard, Identity, lock_score
from bot.narration.joins import Joiner
from bot.narration.masters import MasterWriter
from bot.narration.script import Pause, Script, Speech, estimate_seconds

log = logging.getLogger(__name__)

SEED_STRIDE = 7919  # seed offset of each re-sample attempt (a prime, so attempts never reuse a neighbour's seed)
MIN_SCORED_SECONDS = 0.5  # the speaker encoder needs some speech to say anything
PROGRESS_EVERY_S = 0.5


@dataclass(frozen=True)
class AudioChunk:
    audio: np.ndarray  # (n,) float32 in [-1, 1], 24 kHz mono
    made_at: float = field(default_factory=time.monotonic)  # when it existed (voice playback measures speed by it)


@dataclass(frozen=True)
class Progress:
    segment: int  # 1-based index of the speech segment being rendered (pauses cost nothing and are not counted)
    total: int  # speech segments in the render
    elapsed_s: float
    eta_s: float | None  # predicted seconds until the render finishes
    lock_scores: tuple[float | None, ...]  # per finished segment; None for pauses and unscored speech
    made_at: float = field(default_factory=time.monotonic)  # time.monotonic() on the compute thread


@dataclass(frozen=True)
class Finished:
    master_path: Path | None  # None when the render kept no master
    sidecar_path: Path | None
    audio_seconds: float
    lock_scores: tuple[float | None, ...]
    timings: dict[str, float]  # model_s (inside the engine), guard_s (x-vectors), first_audio_s, total_s


RenderEvent = AudioChunk | Progress | Finished


class Stopped(Exception):
    """The render was cancelled; raised inside the production to unwind it."""


class FrameBudgetExceeded(Exception):
    """The render used up its job-wide frame budget (`RenderOptions.max_job_seconds`) with speech still to make."""

    def __init__(self, frames: int, seconds: float) -> None:
        super().__init__(f"the render used its budget of {frames} frames ({seconds:g} s of audio)")
        self.frames, self.seconds = frames, seconds


@dataclass
class SegmentReport:
    index: int
    kind: str  # speech | pause
    seconds: float = 0.0  # audio produced for it (before crossfade overlap)
    voice: str | None = None
    text: str | None = None
    instruct: str | None = None
    seed: int | None = None
    attempts: int = 0
    probe_scores: list[float] = field(default_factory=list)
    lock_score: float | None = None


@dataclass(frozen=True)
class RenderOptions:
    outputs_dir: Path | None  # None: keep no master (stream only)
    guard: DriftGuard
    fade_ms: float  # crossfade at joins
    max_frames: int | None  # user cap per segment, on top of the length-based one
    # Seconds of audio (as code frames) the engine may generate for the whole render, every segment and every
    # drift-guard attempt (heard or not) together: run-on generations and re-samples cannot hold a worker until
    # the job timeout. None: no budget.
    max_job_seconds: float | None = None
    route: str | None = None  # routing key handed to the engine (the guild id; a remote engine picks its server by it)


class Production:
    def __init__(
        self,
        engine: Engine,
        script: Script,
        plan: list[tuple[Speech | Pause, Identity | None]],
        options: RenderOptions,
        eta_store: EtaStore,
        emit: Callable[[RenderEvent], None],
        stop: Callable[[], bool],
        job_id: object | None = None,
        sidecar_extra: Mapping[str, Any] | None = None,
        load: Callable[[], int] = lambda: 1,
    ) -> None:
        self.engine, self.script, self.plan, self.options = engine, script, plan, options
        self.load = load  # renders sharing the engine now (this one included): the ETA's speed is kept per load
        self.loads: list[int] = []  # `load()` at the start and at each progress step: the render's mean load
        self.eta_store, self.emit, self.stop, self.job_id = eta_store, emit, stop, job_id
        self.sidecar_extra = dict(sidecar_extra or {})  # e.g. the pronunciation rules that changed the script
        self.reports: list[SegmentReport] = []
        self.timings = {"model_s": 0.0, "guard_s": 0.0}
        self.samples_out = 0
        self.samples_generated = 0  # by the engine, discarded attempts included (the job's frame budget)
        self._cut_by_budget = False  # the current attempt's frame cap is what was left of the budget
        self.units = [estimate_seconds(i.text) if isinstance(i, Speech) else 0.0 for i, _ in plan]
        # progress counts speech only: the ordinal of each speech item, and how many there are
        self.speech_ordinal = _speech_ordinals(plan)
        self.speech_total = sum(isinstance(i, Speech) for i, _ in plan)
        self.finished_units = self.finished_audio_s = 0.0  # speech done so far: estimated vs produced seconds
        self.writer: MasterWriter | None = None

    # -- the run -----------------------------------------------------------------------------------------------------

    def run(self) -> Finished | None:
        self.started = time.perf_counter()
        audio = self.engine.audio  # read here, on the compute thread: it may load the checkpoint
        self.rate, self.frame_rate = audio.sample_rate, audio.frame_rate  # Hz of every chunk, master and sidecar
        self.joiner = Joiner(max(1, int(self.options.fade_ms * self.rate / 1000)))
        key = eta_key(self.engine.describe())
        self.loads.append(self.load())
        self.eta = RenderEta(sum(self.units), self.eta_store.rate(key, self.loads[0]))
        # The speed is measured from here: a checkpoint load above is not generation and must not skew the ETA.
        self.generation_started = time.perf_counter()
        try:
            if self.options.outputs_dir is not None:
                self.writer = MasterWriter(self.options.outputs_dir, self.job_id, self.rate)
            for index, (item, identity) in enumerate(self.plan):
                self._check_stop()
                if isinstance(item, Pause):
                    self._pause(index, item)
                else:
                    self._speech(index, item, identity)
            self._out(self.joiner.finish())
            self._check_stop()
            finished = self._finish(key)
        except BaseException:
            if self.writer is not None:
                self.writer.abort()
            raise
        self.emit(finished)
        return finished

    def _check_stop(self) -> None:
        if self.stop():
            raise Stopped

    def _out(self, audio: np.ndarray) -> None:
        if not len(audio):
            return
        audio = np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)  # clip once: stream and master agree
        if self.writer is not None:
            self.writer.write(audio)
        if self.samples_out == 0:
            self.timings["first_audio_s"] = time.perf_counter() - self.started
        self.samples_out += len(audio)
        self.emit(AudioChunk(audio))

    def _progress(self, index: int, segment_audio_s: float) -> None:
        # Audio of the running segment, in estimated units: scaled by how long finished speech really came out, so a
        # voice that speaks slower than the text estimate does not leave the ETA stuck near zero on a long segment.
        per_unit = self.finished_audio_s / self.finished_units if self.finished_units > 0 else 1.0
        done = sum(self.units[:index]) + min(self.units[index] * 0.95, segment_audio_s / max(per_unit, 1e-6))
        now = time.perf_counter()
        self.loads.append(self.load())
        eta = self.eta.remaining_s(done, now - self.generation_started)
        self._last_progress = now
        self.emit(Progress(self.speech_ordinal[index], self.speech_total, now - self.started, eta, self.lock_scores()))

    def lock_scores(self) -> tuple[float | None, ...]:
        return tuple(r.lock_score for r in self.reports)

    # -- pauses and speech -------------------------------------------------------------------------------------------

    def _pause(self, index: int, pause: Pause) -> None:
        samples = int(round(pause.seconds * self.rate))
        self._out(self.joiner.pause(samples))
        self.reports.append(SegmentReport(index, "pause", seconds=samples / self.rate))

    def _speech(self, index: int, speech: Speech, identity: Identity) -> None:
        self._progress(index, 0.0)
        report = SegmentReport(index, "speech", voice=speech.voice, text=speech.text)
        report.instruct = emotions.combine(identity.base_style, speech.instruct)
        reference = self._guard_reference(identity)
        held, rest = self._choose_attempt(speech, identity, report, reference)
        self.joiner.begin_piece()
        parts: list[np.ndarray] = []
        for chunk in _chain(held, rest):
            parts.append(chunk)
            self._out(self.joiner.push(chunk))
            if time.perf_counter() - self._last_progress >= PROGRESS_EVERY_S:
                self._progress(index, sum(len(p) for p in parts) / self.rate)
        self._check_stop()
        if self._cut_by_budget and self._budget_left() <= 0:
            raise self._budget_spent()
        self._out(self.joiner.end_piece())
        audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        report.seconds = len(audio) / self.rate
        self.finished_units += self.units[index]
        self.finished_audio_s += report.seconds
        report.lock_score = self._score(audio, reference)
        self.reports.append(report)

    def _guard_reference(self, identity: Identity) -> tuple[float, ...] | None:
        guard = self.options.guard
        if not guard.enabled or not getattr(self.engine, "has_speaker_encoder", False):
            return None
        return identity.guard_vector

    def _choose_attempt(
        self, speech: Speech, identity: Identity, report: SegmentReport, reference: tuple[float, ...] | None
    ) -> tuple[list[np.ndarray], Iterator[np.ndarray]]:
        """Start attempts until one's probe (its first `probe_seconds`, held back, unheard) scores >= threshold."""
        guard = self.options.guard
        retries = guard.max_retries if reference is not None and guard.probe_seconds > 0 else 0
        probe_s = max(guard.probe_seconds, MIN_SCORED_SECONDS) if guard.probe_seconds > 0 else 0.0
        probe_samples = int(probe_s * self.rate) if reference is not None else 0
        for attempt in range(retries + 1):
            report.seed, report.attempts = identity.seed + attempt * SEED_STRIDE, attempt + 1
            request = speech_request(speech.text, identity, report.instruct, report.seed, self._frame_cap(speech),
                                     latency_critical=self.samples_out == 0, route=self.options.route)  # fmt: skip
            stream = self._timed(self.engine.stream(request, self.stop))
            held = _take(stream, probe_samples)
            self._check_stop()
            if reference is None or probe_samples == 0:
                return held, stream
            score = self._score(np.concatenate(held) if held else np.zeros(0, np.float32), reference)
            if score is not None:
                report.probe_scores.append(score)
            if score is None or score >= guard.threshold or attempt == retries:
                if score is not None and score < guard.threshold:
                    log.warning("segment %d kept after %d attempts, lock score %.3f", report.index, attempt + 1, score)
                return held, stream
            log.info("segment %d attempt %d lock score %.3f < %.3f: re-sampling", report.index, attempt + 1,
                     score, guard.threshold)  # fmt: skip
            stream.close()
        raise AssertionError("unreachable: the last attempt always returns")

    def _frame_cap(self, speech: Speech) -> int:
        cap = frame_cap(speech.text, self.frame_rate, self.options.max_frames)
        if self.options.max_job_seconds is None:
            return cap
        left = self._budget_left()
        if left <= 0:
            raise self._budget_spent()
        self._cut_by_budget = left < cap
        return min(cap, left)

    def _job_frames(self) -> int:
        return int(self.options.max_job_seconds * self.frame_rate)

    def _budget_left(self) -> int:
        if self.options.max_job_seconds is None:
            return 1 << 62
        return self._job_frames() - round(self.samples_generated * self.frame_rate / self.rate)

    def _budget_spent(self) -> FrameBudgetExceeded:
        return FrameBudgetExceeded(self._job_frames(), self.options.max_job_seconds)

    def _timed(self, stream: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """The engine stream, with the time spent inside it added to timings['model_s']."""
        try:
            while True:
                started = time.perf_counter()
                try:
                    chunk = next(stream)
                except StopIteration:
                    return
                finally:
                    self.timings["model_s"] += time.perf_counter() - started
                self.samples_generated += len(chunk)
                yield chunk
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    def _score(self, audio: np.ndarray, reference: tuple[float, ...] | None) -> float | None:
        if reference is None or len(audio) < MIN_SCORED_SECONDS * self.rate:
            return None
        started = time.perf_counter()
        vector = self.engine.xvector(audio, self.rate)
        self.timings["guard_s"] += time.perf_counter() - started
        return None if vector is None else lock_score(vector, reference)

    # -- the end -----------------------------------------------------------------------------------------------------

    def _finish(self, key: str) -> Finished:
        now = time.perf_counter()
        self.timings["total_s"] = now - self.started
        units = sum(self.units)
        if units > 0:  # the speed of generation alone (no checkpoint load), as the next render's ETA assumes
            mean_load = sum(self.loads) / len(self.loads)
            self.eta_store.update(key, max(now - self.generation_started, 1e-6) / units, mean_load)
        audio_s = self.samples_out / self.rate
        master = sidecar = None
        if self.writer is not None:
            master = self.writer.finish(self._sidecar(audio_s))
            sidecar = self.writer.sidecar_path
        return Finished(master, sidecar, audio_s, self.lock_scores(), dict(self.timings))

    def _sidecar(self, audio_s: float) -> dict[str, Any]:
        identities = {}
        for _, identity in self.plan:
            if identity is not None:
                identities[identity.id] = identity.to_dict()
        return {
            "version": 1,
            "job_id": None if self.job_id is None else str(self.job_id),
            "script": self.script.source,
            "sample_rate": self.rate,
            "audio_seconds": audio_s,
            "engine": self.engine.describe(),
            "guard": asdict(self.options.guard),
            "identities": identities,
            "segments": [vars(r) | {"identity": _identity_id(self.plan[r.index][1])} for r in self.reports],
            "timings": dict(self.timings),
            **self.sidecar_extra,
        }


def speech_request(text: str, identity: Identity, instruct: str | None, seed: int, max_frames: int,
                   latency_critical: bool, route: str | None = None) -> SpeechRequest:  # fmt: skip
    """What the engine needs of a locked identity: the timbre (model, speaker row or vector, ICL reference) and the
    language."""
    return SpeechRequest(
        text,
        identity.model,
        language=identity.language,
        speaker=identity.speaker,
        vector=identity.vector,
        instruct=instruct,
        seed=seed,
        max_frames=max_frames,
        latency_critical=latency_critical,
        route=route,
        ref_codes=identity.ref_codes,
        ref_text=identity.transcript if identity.ref_codes is not None else None,
    )


def _speech_ordinals(plan: list[tuple[Speech | Pause, Identity | None]]) -> list[int]:
    """1-based ordinal of each item among the speech items (a pause carries the ordinal of the speech before it)."""
    ordinals, count = [], 0
    for item, _ in plan:
        count += isinstance(item, Speech)
        ordinals.append(max(count, 1))
    return ordinals


def frame_cap(text: str, frame_rate: float, max_frames: int | None = None) -> int:
    """Frames a speech segment may run to: generous for slow speech, but bounded, because untamed generations can run
    on (reference §7). Voice playback plans a segment's gapless start against this bound too."""
    cap = int(frame_rate * (2.0 * estimate_seconds(text) + 4.0))
    return min(cap, max_frames) if max_frames else cap


def segment_bounds(script: Script, frame_rate: float, max_frames: int | None = None) -> list[float]:
    """The most seconds of audio each speech segment of `script` can produce, in order (the numbering of
    `Progress.segment`; a pause's silence follows the speech before it)."""
    return [frame_cap(speech.text, frame_rate, max_frames) / frame_rate for speech in script.speeches]


def _identity_id(identity: Identity | None) -> str | None:
    return None if identity is None else identity.id


def _take(stream: Iterator[np.ndarray], samples: int) -> list[np.ndarray]:
    """Pull chunks until at least `samples` are held (or the stream ends)."""
    held: list[np.ndarray] = []
    count = 0
    while count < samples:
        chunk = next(stream, None)
        if chunk is None:
            break
        held.append(chunk)
        count += len(chunk)
    return held


def _chain(held: list[np.ndarray], rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield from held
    yield from rest

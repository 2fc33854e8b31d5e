"""From checked `SpeechParams` to audio chunks on the event loop, through the `Engine` protocol.

Three paths: a plain segment (`script: false`, what the bot's RemoteEngine sends: one `engine.stream` call, exactly
the request a local render would make, so the audio is the same), a script (the default for OpenAI clients: our
tag language parsed by `parse_script` and rendered by a `Narrator`, no master kept), and a voice design (`task_type`
VoiceDesign: one anchor clip).

`ref_audio` clones the narrator's voice, as vLLM-Omni's Base task does: with `ref_text` (the clip's words) it is
in-context cloning (ICL: the Base checkpoint continues the clip's codec codes, with its x-vector at the speaker
position); with `x_vector_only_mode` true, or an explicit `task_type` CustomVoice, only the clip's x-vector is kept
(the timbre at the speaker position of the CustomVoice checkpoint, so emotion instructions still work). ICL without
`ref_text` is a 400, as in vLLM-Omni.

Every render runs on one of `max_streams` compute threads; the engine sees concurrent `stream` calls and batches
them if it can. `stop()` (client gone, server closing) ends a render at its next frame.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from bot.engine.protocol import Engine, EngineError, SpeechRequest
from bot.narration.identity import DriftGuard, Identity
from bot.narration.production import speech_request
from bot.narration.script import Script, ScriptError, parse_script
from bot.serve.errors import ApiError, bad
from bot.serve.metrics import Metrics
from bot.serve.references import ReferenceIntake
from bot.serve.schemas import SpeechParams
from bot.serve.voices import VoiceStore
from bot.services.clips import Clip

log = logging.getLogger(__name__)

OPENAI_MODEL_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")  # what Open WebUI and others send by default
_END = object()


@dataclass(frozen=True)
class Job:
    """What to render: exactly one of `segment`, `script` (+ `voices`) or `design` is set."""

    segment: SpeechRequest | None = None
    script: Script | None = None
    voices: dict[str | None, Identity] | None = None
    max_frames: int | None = None
    design: tuple[str, str, str, int, int] | None = None  # description, text, language, seed, max_frames
    text_chars: int = 0


class CountingEngine:
    """The engine with `batch_rows` counting the streams inside it (attributes pass through)."""

    def __init__(self, engine: Engine, metrics: Metrics) -> None:
        self._engine, self._metrics = engine, metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def stream(self, request: SpeechRequest, stop: Callable[[], bool]) -> Iterator[np.ndarray]:
        self._metrics.batch_rows.inc()
        try:
            yield from self._engine.stream(request, stop)
        finally:
            self._metrics.batch_rows.dec()


class Renderer:
    def __init__(self, engine: Engine, voices: VoiceStore, metrics: Metrics, *, max_streams: int,
                 max_new_tokens: int) -> None:  # fmt: skip
        self.engine = CountingEngine(engine, metrics)
        self.voice_store, self.metrics = voices, metrics
        self.max_new_tokens = max_new_tokens
        self.pool = ThreadPoolExecutor(max_workers=max_streams, thread_name_prefix="serve-render")
        self.closing = threading.Event()
        self.info = None  # CheckpointInfo of the CustomVoice checkpoint, read at start
        self.references = ReferenceIntake()

    async def start(self) -> None:
        await self.compute(self.engine.start)
        self.info = await self.compute(self.engine.checkpoint, None)

    def close(self) -> None:
        self.closing.set()
        self.pool.shutdown(wait=True)

    async def compute(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    # -- facts -------------------------------------------------------------------------------------------------------

    @property
    def model(self) -> str:
        return self.engine.custom_voice_model

    def model_ids(self) -> list[str]:
        described = self.engine.describe()
        extra = [described.get("base_model"), described.get("design_model")]
        return [m for m in dict.fromkeys([self.model, *extra]) if m]

    @property
    def base_model(self) -> str | None:
        return self.engine.describe().get("base_model")

    def presets(self) -> list[str]:
        return [s.lower() for s in self.info.speakers] if self.info else []

    # -- from params to a job ----------------------------------------------------------------------------------------

    async def job(self, params: SpeechParams) -> Job:
        self._check_model(params.model)
        self._check_language(params.language)
        if params.task_type == "VoiceDesign":
            return self._design_job(params)
        narrator = await self._narrator_identity(params)
        frames = params.max_new_tokens or 0
        if not params.script:  # the request a local render of this identity makes (speech_request), so equal audio
            request = speech_request(params.input, narrator, params.instructions, params.seed, frames,
                                     params.latency_critical)  # fmt: skip
            return Job(segment=request, text_chars=len(params.input))
        script = self._parse(params.input)
        voices: dict[str | None, Identity] = {None: narrator}
        for name in script.voices:
            voices[name] = self._named_identity(name, params)
        return Job(script=script, voices=voices, max_frames=frames or None, text_chars=len(params.input))

    def _check_model(self, model: str | None) -> None:
        if model is None or model in OPENAI_MODEL_ALIASES or model in self.model_ids():
            return
        raise bad(f"`model` {model!r} is not served here; use one of {', '.join([*self.model_ids(), 'tts-1'])}.",
                  "model", "model_not_found")  # fmt: skip

    def _check_language(self, language: str) -> None:
        known = [x.lower() for x in (self.info.languages if self.info else ())]
        if language != "auto" and known and language not in known:
            raise bad(f"`language` {language!r} is not one this model speaks; use auto or one of {', '.join(known)}.",
                      "language", "unsupported_language")  # fmt: skip

    def _design_job(self, params: SpeechParams) -> Job:
        if not self.engine.capabilities.voice_design:
            raise bad("This server has no VoiceDesign checkpoint; start it with --design-model.", "task_type")
        if not params.instructions:
            raise bad("`task_type` VoiceDesign needs `instructions`: a description of the voice.", "instructions")
        frames = params.max_new_tokens or self.max_new_tokens
        return Job(design=(params.instructions, params.input, params.language, params.seed, frames),
                   text_chars=len(params.input))  # fmt: skip

    def _parse(self, text: str) -> Script:
        try:
            return parse_script(text, max_chars=len(text), voice_exists=self._voice_exists)
        except ScriptError as exc:
            raise bad(f"The script has a problem at character {exc.position + 1}: {exc.reason}.", "input",
                      "script_error") from None  # fmt: skip

    def _voice_exists(self, name: str) -> bool:
        return name.lower() in self.presets() or self.voice_store.get(name) is not None

    async def _narrator_identity(self, params: SpeechParams) -> Identity:
        common = {"language": params.language, "seed": params.seed, "base_style": params.instructions}
        if params.timbre is not None:
            self._check_width(len(params.timbre))
            return Identity("timbre", "cloned", self.model, vector=params.timbre, **common)
        if params.ref_audio is not None:
            return await self._cloned_identity(params, common)
        name = params.speaker or params.voice
        if name is None:
            if not self.presets():
                raise bad("`voice` is required: this model has no preset speakers.", "voice")
            return Identity(self.presets()[0], "preset", self.model, speaker=self.presets()[0], **common)
        return self._named_identity(name, params)

    def _named_identity(self, name: str, params: SpeechParams) -> Identity:
        common = {"language": params.language, "seed": params.seed, "base_style": params.instructions}
        if name.lower() in self.presets():
            return Identity(name, "preset", self.model, speaker=name.lower(), **common)
        stored = self.voice_store.get(name)
        if stored is not None:
            vector = self.voice_store.vector(stored)
            return Identity(stored.name, "cloned", self.model, vector=vector, transcript=stored.ref_text, **common)
        known = [*self.presets(), *self.voice_store.names()]
        raise bad(f"There is no voice {name!r} here; use one of {', '.join(known) or 'none'} (GET /v1/audio/voices).",
                  "voice", "voice_not_found")  # fmt: skip

    def _check_width(self, width: int) -> None:
        if self.info is not None and width != self.info.hidden_size:
            raise bad(f"`timbre` has {width} values; this model's voices have {self.info.hidden_size}.", "timbre")

    async def _cloned_identity(self, params: SpeechParams, common: dict) -> Identity:
        in_context = _wants_icl(params)  # checked before any decoding: a missing ref_text costs nothing
        clip = await self.references.decode(params.ref_audio, "ref_audio")
        vector = await self.compute(self._xvector_of_clip, clip)
        if not in_context:
            return Identity("ref_audio", "cloned", self.model, vector=vector, transcript=params.ref_text, **common)
        codes = await self.compute(self._codes_of_clip, clip)
        return Identity("ref_audio", "cloned", self.base_model, vector=vector, transcript=params.ref_text,
                        ref_codes=codes, **common)  # fmt: skip

    def _xvector_of_clip(self, clip: Clip) -> np.ndarray:
        vector = self.engine.xvector(clip.audio, clip.sample_rate)
        if vector is None:
            raise ApiError(400, "Cloning from `ref_audio` needs a Base checkpoint; start the server with --base-model.",
                           param="ref_audio", code="no_speaker_encoder")  # fmt: skip
        return vector

    def _codes_of_clip(self, clip: Clip) -> np.ndarray:
        codes = self.engine.reference_codes(clip.audio, clip.sample_rate)
        if codes is None or self.base_model is None:
            raise bad("In-context cloning is not available on this server's engine; set `x_vector_only_mode` true.",
                      "x_vector_only_mode", "no_icl")  # fmt: skip
        return codes

    # -- rendering ---------------------------------------------------------------------------------------------------

    async def chunks(self, job: Job, stop: Callable[[], bool]) -> AsyncIterator[np.ndarray]:
        """(n,) float32 chunks as they are generated."""
        if job.script is not None:
            async for chunk in self._script_chunks(job, stop):
                yield chunk
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def halted() -> bool:
            return stop() or self.closing.is_set()

        def run() -> None:
            try:
                if job.design is not None:
                    loop.call_soon_threadsafe(queue.put_nowait, self.engine.design_clip(*job.design))
                else:
                    for chunk in self.engine.stream(job.segment, halted):
                        loop.call_soon_threadsafe(queue.put_nowait, chunk)
                        if halted():
                            break
            except BaseException as exc:  # handed to the event loop side, raised there
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        future = loop.run_in_executor(self.pool, run)
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise _as_api_error(item)
                yield np.asarray(item, dtype=np.float32)
        finally:
            # An abandoned render stops at its next frame (the caller's stop() is true by now); its result is
            # retrieved so a late error is not reported as never retrieved.
            future.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def _script_chunks(self, job: Job, stop: Callable[[], bool]) -> AsyncIterator[np.ndarray]:
        from bot.narration.narrator import Narrator
        from bot.narration.production import AudioChunk

        narrator = Narrator(self.engine, outputs_dir=None, compute=self.compute, guard=DriftGuard())
        cancel = threading.Event()
        try:
            async for event in narrator.render(job.script, job.voices, cancel=cancel, max_frames=job.max_frames,
                                               keep_master=False):  # fmt: skip
                if stop() or self.closing.is_set():
                    cancel.set()
                    return
                if isinstance(event, AudioChunk):
                    yield event.audio
        except EngineError as exc:
            raise _as_api_error(exc) from None
        finally:
            cancel.set()


def _as_api_error(exc: BaseException) -> BaseException:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, EngineError):
        return ApiError(500, str(exc), kind="server_error", code="engine_error")
    if isinstance(exc, ValueError):
        return ApiError(400, f"The engine refused this request: {exc}", code="engine_refused")
    return exc


def _wants_icl(params: SpeechParams) -> bool:
    """In-context cloning unless the client asked for the timbre only; ICL without `ref_text` is refused, as
    vLLM-Omni refuses it (the transcript is half of the prompt)."""
    if params.x_vector_only_mode or params.task_type == "CustomVoice":
        return False
    if not params.ref_text:
        raise bad("In-context cloning needs `ref_text`, the words spoken in `ref_audio`; send it, or set "
                  "`x_vector_only_mode` true to clone the timbre only.", "ref_text", "missing_ref_text")  # fmt: skip
    return True

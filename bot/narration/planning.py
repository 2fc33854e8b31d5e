"""The seam between the Discord services and the narration engine (`bot.narration`): the only module here that
imports it. Services see four calls and three event types:

- `await plan(script, max_chars, voice, resolve)` -> Plan: parse the script (ScriptError -> UserError naming the
  position) and resolve every identity it needs (`voice` for the narrator, `resolve(name)` for `[@name]`).
- `predict_seconds(worker, settings, plan)` -> float: Smart ETA before queueing (compute seconds of the render).
- `render(worker, settings, plan, cancel_event)`: async iterator of `Chunk` (24 kHz float32 audio, yielded while
  frames are generated), `Progress` (segment k of n, elapsed, ETA) and one final `Finished` (master path, seconds).
- `await clone(worker, settings, audio, sr, transcript, name)` / `await design(worker, settings, description, name)`
  -> `Designed` (the clip to keep and its locked x-vector).

Engines are cached per worker (`worker.engines`) and loaded on first use on the worker's device.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bot.errors import UserError
from bot.services.library import vector_from_bytes
from bot.settings import Settings
from db import repo

if TYPE_CHECKING:
    from bot.jobs.worker import InferenceWorker


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


@dataclass(frozen=True)
class Plan:
    """A parsed script and the voices it needs: `voices[None]` is the narrator (None = the model's default speaker),
    other keys are the `[@name]` names as written (lower-cased)."""

    script: Any  # bot.narration.Script
    voices: dict[str | None, repo.Voice | None]


def script_error_text(script: str, error: Exception) -> str:
    """'Your script has a problem at character 14 (`…[Pause 20s]…`): reason. Example: …'."""
    position = getattr(error, "position", 0)
    reason = getattr(error, "reason", str(error))
    excerpt = script[max(0, position - 12) : position + 12].replace("`", "'").replace("\n", " ")
    near = f" (near `{excerpt}`)" if excerpt.strip() else ""
    return f"Your script has a problem at character {position + 1}{near}: {reason}. {EXAMPLE}"


EXAMPLE = "Example: `[Whispering] Hello there. [Pause 1s] [Excited] Welcome!`"


async def plan(
    script: str,
    max_chars: int,
    voice: repo.Voice | None,
    resolve: Callable[[str], Awaitable[repo.Voice]],
) -> Plan:
    """Parse and resolve before anything is queued; bad input raises UserError (ScriptError, unknown voice...)."""
    from bot.narration import ScriptError, parse_script

    try:
        parsed = parse_script(script, max_chars=max_chars)
    except ScriptError as exc:
        raise UserError(script_error_text(script, exc)) from None
    voices: dict[str | None, repo.Voice | None] = {None: voice}
    for name in parsed.voices:
        voices[name.lower()] = await resolve(name)
    return Plan(parsed, voices)


# -- on the worker -----------------------------------------------------------------------------------------------------


def narrator_for(worker: InferenceWorker, settings: Settings):
    """This worker's `Narrator` (and its `LocalEngine`), built on first use; checkpoints load lazily inside."""
    narrator = worker.engines.get("narrator")
    if narrator is None:
        from bot.narration import DriftGuard, LocalEngine, Narrator

        engine = LocalEngine(
            settings.custom_voice_model,
            base_model=settings.base_model,
            design_model=settings.voice_design_model,
            device=worker.device,
            dtype=settings.dtype,
        )
        narrator = Narrator(
            engine,
            outputs_dir=settings.outputs_dir,
            compute=worker.compute,
            eta_path=settings.data_dir / "eta.json",
            guard=DriftGuard(**settings.drift_guard_options()),
        )
        worker.engines["narrator"] = narrator
    return narrator


def predict_seconds(worker: InferenceWorker, settings: Settings, plan: Plan) -> float:
    """Predicted compute seconds of rendering `plan` on `worker` (the stored speed of its model and device; loads no
    checkpoint, reads the small ETA file once)."""
    return float(narrator_for(worker, settings).predict_seconds(plan.script))


def identity_of(voice: repo.Voice, settings: Settings):
    """The locked `Identity` of a stored voice (its id is `voice-<db id>`, as written in the master's sidecar)."""
    from bot.narration import Identity

    vector = tuple(float(x) for x in vector_from_bytes(voice.timbre)) if voice.timbre else None
    model = voice.model or settings.custom_voice_model
    if voice.kind in ("preset", "finetuned"):
        vector = None  # the checkpoint's own speaker row is the timbre
    return Identity(
        id=f"voice-{voice.id}",
        name=voice.name,
        kind=voice.kind,
        model=model,
        speaker=voice.speaker,
        vector=vector,
        ref_clip=voice.ref_clip_path,
        transcript=voice.transcript,
        language=voice.language,
        seed=voice.seed,
        description=voice.description,
    )


async def identities(worker: InferenceWorker, settings: Settings, plan: Plan) -> dict[str | None, Any]:
    narrator = narrator_for(worker, settings)
    out: dict[str | None, Any] = {}
    for key, voice in plan.voices.items():
        if voice is None:
            out[key] = await narrator.preset_voice(await default_speaker(worker, narrator))
        else:
            out[key] = identity_of(voice, settings)
    return out


async def default_speaker(worker: InferenceWorker, narrator) -> str:
    """The CustomVoice checkpoint's first preset speaker: the voice of members without a lock or server default."""
    speakers = await narrator.speakers()
    if not speakers:
        raise UserError("The narration model has no preset speakers; lock a voice first with /voice lock.")
    return speakers[0]


async def render(
    worker: InferenceWorker, settings: Settings, plan: Plan, cancel: threading.Event, job_id: int = 0
) -> AsyncIterator[Chunk | Progress | Finished]:
    from bot.narration import AudioChunk
    from bot.narration import Finished as NFinished
    from bot.narration import Progress as NProgress

    narrator = narrator_for(worker, settings)
    voices = await identities(worker, settings, plan)
    async for event in narrator.render(plan.script, voices, job_id=job_id, cancel=cancel):
        if isinstance(event, AudioChunk):
            yield Chunk(event.audio)
        elif isinstance(event, NProgress):
            yield Progress(event.segment, event.total, event.elapsed_s, event.eta_s)
        elif isinstance(event, NFinished):
            yield Finished(Path(event.master_path), float(event.audio_seconds))


async def clone(worker: InferenceWorker, settings: Settings, audio: np.ndarray, sr: int, transcript: str, name: str):
    """-> Designed-like result: the reference clip and its locked x-vector."""
    lock = await narrator_for(worker, settings).clone_voice(audio, sr, transcript, name)

    return Designed(np.asarray(lock.clip, np.float32), lock.sample_rate, _vector(lock.identity), lock.identity.seed)


async def design(worker: InferenceWorker, settings: Settings, description: str, name: str) -> Designed:
    lock = await narrator_for(worker, settings).design_voice(description, name)
    return Designed(np.asarray(lock.clip, np.float32), lock.sample_rate, _vector(lock.identity), lock.identity.seed)


def _vector(identity) -> np.ndarray:
    assert identity.vector is not None, "a designed or cloned identity must carry its x-vector"
    return np.asarray(identity.vector, dtype=np.float32)

"""From stored voices and a script to a render plan, and the calls the services make on a worker's `Narrator`:

- `await plan(script, max_chars, voice, resolve)` -> Plan: parse the script (ScriptError -> UserError naming the
  position) and resolve every voice it needs (`voice` for the narrator, `resolve(name)` for `[@name]`).
- `predict_seconds(narrator, plan)` -> float: Smart ETA before queueing (compute seconds of the render).
- `render(narrator, plan, cancel, job_id, max_job_seconds)`: async iterator of the production's `AudioChunk` /
  `Progress` / `Finished` events, audio yielded while frames are generated; a render that spends its frame budget
  ends with a UserError.
- `await clone(narrator, audio, sr, transcript, name)` / `await design(narrator, description, name)` -> VoiceLock.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bot.durations import about
from bot.errors import UserError
from bot.narration.identity import Identity, VoiceLock, vector_from_bytes
from bot.narration.narrator import Narrator
from bot.narration.production import FrameBudgetExceeded, RenderEvent
from bot.narration.script import DEFAULT_MAX_PAUSE_TOTAL_S, Script, estimate_seconds, visible
from db import repo


@dataclass(frozen=True)
class Plan:
    """A parsed script and the voices it needs: `voices[None]` is the narrator (None = the model's default speaker),
    other keys are the `[@name]` names as written (lower-cased)."""

    script: Script
    voices: dict[str | None, repo.Voice | None]
    notes: Mapping[str, Any] = field(default_factory=dict)  # extra facts for the master's sidecar (dictionary rules)


def script_error_text(script: str, error: Exception) -> str:
    """'Your script has a problem at character 14 (`…[Pause 20s]…`): reason. Example: …'."""
    position = getattr(error, "position", 0)
    reason = getattr(error, "reason", str(error))
    excerpt = visible(script[max(0, position - 12) : position + 12]).replace("`", "'").replace("\n", " ")
    near = f" (near `{excerpt}`)" if excerpt.strip() else ""
    return f"Your script has a problem at character {position + 1}{near}: {reason}. {EXAMPLE}"


EXAMPLE = "Example: `[Whispering] Hello there. [Pause 1s] [Excited] Welcome!`"
# Fine-tuned checkpoints one script may use: the engine keeps 4 loaded (CustomVoice, Base, and room for 2), so
# alternating `[@a]` `[@b]` over more of them would reload a checkpoint at every segment.
DEFAULT_MAX_CHECKPOINTS = 2


async def plan(
    script: str,
    max_chars: int,
    voice: repo.Voice | None,
    resolve: Callable[[str], Awaitable[repo.Voice]],
    *,
    max_pause_total_s: float = DEFAULT_MAX_PAUSE_TOTAL_S,
    max_checkpoints: int = DEFAULT_MAX_CHECKPOINTS,
) -> Plan:
    """Parse and resolve before anything is queued; bad input raises UserError (ScriptError, unknown voice, too
    many fine-tuned checkpoints...)."""
    parsed = parse(script, max_chars, max_pause_total_s)
    voices: dict[str | None, repo.Voice | None] = {None: voice}
    for name in parsed.voices:
        voices[name.lower()] = await resolve(name)
    check_checkpoints(voices, max_checkpoints)
    return Plan(parsed, voices)


def check_checkpoints(voices: dict[str | None, repo.Voice | None], limit: int) -> None:
    """Refuse a script whose voices need more than `limit` distinct fine-tuned checkpoints."""
    by_model: dict[str, list[str]] = {}
    for voice in voices.values():
        if voice is not None and voice.kind == "finetuned" and voice.model:
            by_model.setdefault(voice.model, []).append(voice.name)
    if len(by_model) > limit:
        names = ", ".join(f"`{names[0]}`" for names in by_model.values())
        raise UserError(
            f"This script uses {len(by_model)} fine-tuned voices with their own models ({names}); one /say can use "
            f"at most {limit} (NARRATOR_MAX_CHECKPOINTS_PER_SCRIPT), because switching between more reloads a "
            "model at every change of voice. Use fewer of them, or split the script into several /say."
        )


def speech_seconds(plan: Plan) -> float:
    """Estimated seconds of speech of a plan (pauses excluded: the parser bounds them)."""
    return sum(estimate_seconds(s.text) for s in plan.script.speeches)


def parse(script: str, max_chars: int, max_pause_total_s: float | None = None) -> Script:
    """The parsed script; a ScriptError becomes a UserError naming the position."""
    from bot.narration import ScriptError, parse_script

    limits = {} if max_pause_total_s is None else {"max_pause_total_s": max_pause_total_s}
    try:
        return parse_script(script, max_chars=max_chars, **limits)
    except ScriptError as exc:
        raise UserError(script_error_text(script, exc)) from None


# -- on the worker ---------------------------------------------------------------------------------------------------


def predict_seconds(narrator: Narrator, plan: Plan) -> float:
    """Predicted compute seconds of rendering `plan` (the stored speed of the model and device; loads nothing)."""
    return float(narrator.predict_seconds(plan.script))


def identity_of(voice: repo.Voice, default_model: str) -> Identity:
    """The locked `Identity` of a stored voice (its id is `voice-<db id>`, as written in the master's sidecar)."""
    vector = tuple(float(x) for x in vector_from_bytes(voice.timbre)) if voice.timbre else None
    if voice.kind in ("preset", "finetuned"):
        vector = None  # the checkpoint's own speaker row is the timbre
    return Identity(
        id=f"voice-{voice.id}",
        name=voice.name,
        kind=voice.kind,
        model=voice.model or default_model,
        speaker=voice.speaker,
        vector=vector,
        ref_clip=voice.ref_clip_path,
        transcript=voice.transcript,
        language=voice.language,
        seed=voice.seed,
        description=voice.description,
    )


async def identities(narrator: Narrator, plan: Plan) -> dict[str | None, Identity]:
    out: dict[str | None, Identity] = {}
    for key, voice in plan.voices.items():
        if voice is None:
            out[key] = await narrator.preset_voice(await default_speaker(narrator))
        else:
            out[key] = identity_of(voice, narrator.engine.custom_voice_model)
    return out


async def default_speaker(narrator: Narrator) -> str:
    """The CustomVoice checkpoint's first preset speaker: the voice of members without a lock or server default."""
    speakers = await narrator.speakers()
    if not speakers:
        raise UserError("The narration model has no preset speakers; lock a voice first with /voice lock.")
    return speakers[0]


def segment_bounds(plan: Plan, frame_rate: float) -> list[float]:
    """Seconds of audio each speech segment of the plan can run to at most (index = `Progress.segment` - 1), at the
    engine's `frame_rate`: what voice playback needs to start a segment only when it can play without a gap."""
    from bot.narration.production import segment_bounds as bounds

    return bounds(plan.script, frame_rate)


async def render(
    narrator: Narrator,
    plan: Plan,
    cancel: threading.Event,
    job_id: int = 0,
    max_job_seconds: float | None = None,
    *,
    keep_master: bool = True,
    route: str | None = None,
) -> AsyncIterator[RenderEvent]:
    """The production's events; `max_job_seconds` (NARRATOR_MAX_JOB_AUDIO_S) bounds the frames of the whole
    render, drift-guard attempts included: spent with speech left, the render stops with a UserError. `route`: the
    guild id, so a remote engine keeps one guild's renders on one server."""
    voices = await identities(narrator, plan)
    try:
        events = narrator.render(plan.script, voices, job_id=job_id, cancel=cancel, max_job_seconds=max_job_seconds,
                                 keep_master=keep_master, sidecar_extra=plan.notes, route=route)  # fmt: skip
        async for event in events:
            yield event
    except FrameBudgetExceeded as exc:
        raise UserError(
            f"This render reached the limit of {about(exc.seconds)} of generated audio for one /say "
            "(NARRATOR_MAX_JOB_AUDIO_S) and was stopped. Split the script into shorter ones."
        ) from None


async def clone(narrator: Narrator, audio: np.ndarray, sr: int, transcript: str, name: str) -> VoiceLock:
    """The reference clip and its locked x-vector."""
    return await narrator.clone_voice(audio, sr, transcript, name)


async def design(narrator: Narrator, description: str, name: str) -> VoiceLock:
    return await narrator.design_voice(description, name)

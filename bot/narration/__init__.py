"""Narration: emotion-tagged scripts + locked voice identities -> streamed 24 kHz audio and a saved master.

Plain Python, no Discord. The bot's services (`bot/narrate.py`) and `narrator render` call exactly this API:

Parsing (pure, no I/O; call it before queueing so bad input is answered at once)::

    script = parse_script(text, max_chars=2000, max_segments=64, voice_exists=None)   # -> Script (frozen)
    # ScriptError(position, reason) for: unclosed/empty tag, bad or too long pause (> 10 s), script too long,
    # too many segments, unknown voice `[@name]` (voice_exists(name) -> bool; None accepts every name), nothing to say.
    script.items            # tuple[Speech | Pause, ...] in order
    script.voices           # names used by `[@name]` tags (the narrator's own voice is the key None)
    Speech(text, instruct, emotion, voice, start, end)   # voice None = the narrator; start/end index the source text
    Pause(seconds, start, end)

Language: `[Whispering] Hi.` (about 20 curated emotions, case-insensitive, see `emotions.EMOTIONS`; any other tag text
is a free-form instruction; `[Neutral]` clears it), `[Pause]` (0.8 s), `[Pause 1.5s]`, `[Pause 500ms]`, `[@name]`
(switch to another registered voice; it resets the emotion), `\\[` and `\\]` escape brackets. Long speech is split at
sentence boundaries into pieces of about 20 s or less.

Identities (frozen, JSON-serialisable; `Identity.to_dict()` / `Identity.from_dict()`)::

    Identity(id, name, kind, model, speaker=None, vector=None, reference_vector=None, ref_clip=None,
             transcript=None, language="auto", seed=0, base_style=None)
    # kind: "preset" | "designed" | "cloned" | "finetuned"; model: the CustomVoice checkpoint that renders it;
    # vector: the timbre put at the speaker position (x-vector or preset row, tuple[float, ...]); None = preset row
    # of `speaker`; reference_vector: x-vector the drift guard compares against (defaults to `vector`).

The service (one per inference worker; the worker owns the GPU thread)::

    engine = LocalEngine(EngineOptions(custom_voice_model, base_model=None, design_model=None, device="auto"))
    # bot.engine: any `Engine` works here (the local one over qwen_tts, a remote one, a scripted one in tests).
    # Checkpoints load lazily (CustomVoice on the first render, Base for x-vectors, VoiceDesign only to design;
    # fine-tuned voices load their own checkpoint), least recently used dropped beyond max_loaded. Chunks start at
    # 2 frames (160 ms, low latency) and double up to 16 while nothing has played yet; later segments use 16 (the
    # listener is already hearing earlier audio); cancellation is checked at every frame.
    narrator = Narrator(engine, outputs_dir=Path("outputs"), compute=worker.compute, eta_path=data_dir / "eta.json",
                        guard=DriftGuard(threshold=0.5, max_retries=2, probe_seconds=1.5))
    # compute(fn, *args) -> awaitable: runs blocking model work on the worker's one thread (default: own thread).

    async for event in narrator.render(script, voices, job_id=42, cancel=threading_event, max_frames=None):
        AudioChunk(audio)   # (n,) float32, 24 kHz mono, yielded while frames are still being generated
        Progress(segment, total, elapsed_s, eta_s, lock_scores)   # 1-based segment k of n
        Finished(master_path, sidecar_path, audio_seconds, lock_scores)   # last event
    # voices: Mapping[str | None, Identity]; key None = the narrator, other keys = `[@name]` names (case-insensitive).
    # Cancelling (cancel.set(), task.cancel() or leaving the loop) stops audio at once and the compute thread at its
    # next frame; no master is kept for a cancelled render.

    narrator.predict_seconds(script) -> float   # Smart ETA before queueing (stored speed of this model + device)

    lock = await narrator.design_voice(description, name, language="auto", seed=0)   # -> VoiceLock
    lock = await narrator.clone_voice(audio, sr, transcript, name, language="auto")  # -> VoiceLock
    identity = await narrator.preset_voice(speaker, language="auto", seed=0, model=None)   # -> Identity
    # model=None: a preset of the CustomVoice checkpoint; model=DIR: a fine-tuned checkpoint's speaker ("finetuned").
    # VoiceLock(identity, clip (n,) float32, sample_rate): designed = the anchor clip rendered once by the VoiceDesign
    # checkpoint, its x-vector (Base speaker encoder) is the locked timbre; cloned = the reference clip's x-vector.

Masters: `outputs_dir/<UTC date>/<time>-<job>-<random>.wav` (24 kHz PCM_16) + `.json` sidecar (script, identities,
seeds, model, device, timings, lock scores); `export_master(wav, fmt)` writes FLAC or Opus next to it.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "AudioChunk",
    "DriftGuard",
    "Finished",
    "Identity",
    "Narrator",
    "Pause",
    "Progress",
    "Script",
    "ScriptError",
    "Speech",
    "VoiceLock",
    "export_master",
    "parse_script",
]

_WHERE = {
    "Script": "bot.narration.script",
    "ScriptError": "bot.narration.script",
    "Speech": "bot.narration.script",
    "Pause": "bot.narration.script",
    "parse_script": "bot.narration.script",
    "Identity": "bot.narration.identity",
    "DriftGuard": "bot.narration.identity",
    "VoiceLock": "bot.narration.identity",
    "Narrator": "bot.narration.narrator",
    "AudioChunk": "bot.narration.narrator",
    "Progress": "bot.narration.narrator",
    "Finished": "bot.narration.narrator",
    "export_master": "bot.narration.masters",
}


def __getattr__(name: str) -> Any:
    # Lazy: `import bot.narration` stays cheap (no torch); the parser never needs the model.
    if name not in _WHERE:
        raise AttributeError(f"module 'bot.narration' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

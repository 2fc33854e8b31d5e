"""What the bot can ask of a vLLM-Omni server (its documented `/v1/audio/speech` fields only), and what it lacks.

vLLM-Omni renders preset speakers (`voice`) of the Qwen3-TTS checkpoint it serves, with `instructions`, `language`
and `max_new_tokens`; it streams raw PCM with `stream_format: "audio"`. It takes no seed and no x-vector at the
speaker position, and the bot cannot reach a speaker encoder there, so: no drift guard, no cloned or designed voices
locked by x-vector, no seed-exact re-renders.
"""

from __future__ import annotations

from bot.engine.protocol import AudioFormat, Capabilities, EngineError, SpeechRequest

# vLLM-Omni serves Qwen3-TTS at 24 kHz (docs/serving/speech_api.md); the codec runs at 12.5 frames/s.
AUDIO = AudioFormat(24_000, 1920, 12.5)
LACKS = (
    "no seeds (renders are not repeatable)",
    "no x-vector timbres (cloned and designed voices cannot be rendered; presets only)",
    "no speaker encoder (the drift guard is off; voices cannot be cloned or locked)",
    "no voice design through the bot",
)
CAPABILITIES = Capabilities(speaker_encoder=False, voice_design=False, seeds=False, notes=LACKS)


def language_name(language: str) -> str:
    """Our lower-case language ('auto', 'english') -> vLLM-Omni's spelling ('Auto', 'English')."""
    return language[:1].upper() + language[1:].lower() if language else "Auto"


def speech_body(request: SpeechRequest, model: str) -> dict:
    if request.vector is not None:
        raise EngineError(
            "the vLLM-Omni speech server cannot render x-vector voices (cloned or designed); use a preset voice"
        )
    if not request.speaker:
        raise EngineError("the vLLM-Omni speech server needs a preset speaker for every render")
    body = {
        "model": model,
        "input": request.text,
        "voice": request.speaker,
        "task_type": "CustomVoice",
        "language": language_name(request.language),
        "response_format": "pcm",
        "stream_format": "audio",
    }
    if request.instruct:
        body["instructions"] = request.instruct
    if request.max_frames:
        body["max_new_tokens"] = request.max_frames
    return body

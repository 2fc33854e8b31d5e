"""The curated emotion table: a script tag (`[Whispering]`) -> the instruction sent to the model.

Instructions are full, concrete sentences about delivery only (never timbre: the timbre is locked by the identity's
speaker vector, so an instruction that described a different voice would fight the lock). Any tag that is not in
the table (nor an alias) is used as a free-form instruction, verbatim.
"""

from __future__ import annotations

import re

# name -> instruction. None means "no instruction" (the voice's resting delivery).
EMOTIONS: dict[str, str | None] = {
    "neutral": None,
    "calm": "Speak in a calm, relaxed and even tone, at an unhurried pace.",
    "happy": "Speak in a happy, warm and cheerful tone, with a smile in the voice.",
    "excited": "Speak with excitement and high energy, a little faster and with lively, rising intonation.",
    "sad": "Speak in a sad, subdued tone, slowly and softly, with a heavy heart.",
    "angry": "Speak in an angry, tense tone, with forceful emphasis on the key words.",
    "fearful": "Speak in a fearful, anxious tone, slightly trembling and hurried, as if afraid.",
    "surprised": "Speak with surprise and astonishment, with sudden rises in pitch.",
    "disgusted": "Speak with disgust and distaste, as if something is repulsive.",
    "whispering": "Whisper softly and breathily, very quietly, as if sharing a secret.",
    "shouting": "Shout loudly and forcefully, projecting the voice as if calling across a distance.",
    "sarcastic": "Speak sarcastically, with an ironic, mocking tone and exaggerated emphasis.",
    "serious": "Speak in a serious, grave and measured tone.",
    "tender": "Speak tenderly and gently, with warmth and affection, softly.",
    "playful": "Speak playfully and teasingly, with a light, bouncy rhythm.",
    "confident": "Speak confidently and assertively, with a steady, firm voice.",
    "nervous": "Speak nervously and hesitantly, with small pauses, unsure of yourself.",
    "tired": "Speak in a tired, sleepy and low-energy voice, slowly, with sighs.",
    "mysterious": "Speak in a low, mysterious and suspenseful tone, slowly, drawing the listener in.",
    "dramatic": "Speak dramatically and theatrically, with strong emotion and expressive pauses.",
    "cheerful": "Speak in a bright, upbeat and friendly tone.",
    "crying": "Speak as if crying, with a broken, tearful voice and shaky breaths.",
    "laughing": "Speak while laughing, amused, with bursts of laughter in the voice.",
}

ALIASES: dict[str, str] = {
    "normal": "neutral",
    "default": "neutral",
    "relaxed": "calm",
    "joyful": "happy",
    "glad": "happy",
    "excitedly": "excited",
    "enthusiastic": "excited",
    "sadly": "sad",
    "unhappy": "sad",
    "mad": "angry",
    "furious": "angry",
    "scared": "fearful",
    "afraid": "fearful",
    "fear": "fearful",
    "surprise": "surprised",
    "disgust": "disgusted",
    "whisper": "whispering",
    "whispers": "whispering",
    "whispered": "whispering",
    "shout": "shouting",
    "shouts": "shouting",
    "yelling": "shouting",
    "yell": "shouting",
    "sarcasm": "sarcastic",
    "gentle": "tender",
    "soft": "tender",
    "anxious": "nervous",
    "sleepy": "tired",
    "suspense": "mysterious",
    "cry": "crying",
    "sobbing": "crying",
    "laugh": "laughing",
}

MAX_FREE_FORM_CHARS = 300


def _key(tag: str) -> str:
    return re.sub(r"[\s_\-]+", " ", tag.strip().lower())


def lookup(tag: str) -> tuple[str | None, str | None]:
    """(emotion name or None for a free-form tag, instruction or None for neutral) for the text of a tag."""
    key = _key(tag)
    name = ALIASES.get(key, key)
    if name in EMOTIONS:
        return name, EMOTIONS[name]
    return None, " ".join(tag.split())


def combine(base_style: str | None, instruction: str | None) -> str | None:
    """The instruction sent to the model: the identity's resting style, then the emotion (either may be missing)."""
    parts = [p.strip().rstrip(".") + "." for p in (base_style, instruction) if p and p.strip()]
    return " ".join(parts) or None

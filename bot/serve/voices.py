"""Uploaded voices of `narrator serve` (`/v1/audio/voices`), persisted under `<data dir>/voices/`:
`index.json` (name -> consent, ref_text, created_at, files) plus per voice the 24 kHz reference clip (`.wav`) and
its locked x-vector (`.f32`, `bot.narration.identity.vector_bytes`). Writes go to a temporary file first and then
replace the index, so a crash never leaves a half-written index. Bounded: `max_voices`, names of 1-64 safe chars."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bot.narration.identity import vector_bytes, vector_from_bytes
from bot.serve.errors import ApiError, bad

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_VOICES = 1000


@dataclass(frozen=True)
class StoredVoice:
    name: str
    consent: str
    ref_text: str | None
    speaker_description: str | None
    created_at: int
    clip: str  # file names inside the store's folder
    vector: str

    def public(self) -> dict:
        return {"name": self.name, "consent": self.consent, "ref_text": self.ref_text,
                "speaker_description": self.speaker_description, "created_at": self.created_at}  # fmt: skip


class VoiceStore:
    def __init__(self, folder: Path, max_voices: int = MAX_VOICES) -> None:
        self.folder = Path(folder)
        self.max_voices = max_voices
        self._lock = threading.Lock()
        self._voices: dict[str, StoredVoice] = {}
        self._load()

    @property
    def _index(self) -> Path:
        return self.folder / "index.json"

    def _load(self) -> None:
        if not self._index.is_file():
            return
        data = json.loads(self._index.read_text(encoding="utf-8"))
        self._voices = {v["name"].lower(): StoredVoice(**v) for v in data.get("voices", [])}

    def _save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self._index.with_suffix(".tmp")
        temporary.write_text(json.dumps({"voices": [asdict(v) for v in self._voices.values()]}, indent=1), "utf-8")
        os.replace(temporary, self._index)

    def names(self) -> list[str]:
        with self._lock:
            return [v.name for v in self._voices.values()]

    def listing(self) -> list[dict]:
        with self._lock:
            return [v.public() for v in self._voices.values()]

    def get(self, name: str) -> StoredVoice | None:
        with self._lock:
            return self._voices.get(name.lower())

    def vector(self, voice: StoredVoice) -> np.ndarray:
        return vector_from_bytes((self.folder / voice.vector).read_bytes())

    def check_new(self, name: str, reserved: set[str]) -> None:
        if not NAME.match(name):
            raise bad("`name` must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit.", "name")
        if name.lower() in reserved:
            raise bad(f"`name` {name!r} is a preset speaker of this server; choose another name.", "name")
        with self._lock:
            if name.lower() in self._voices:
                raise ApiError(409, f"A voice named {name!r} already exists; delete it first or choose another name.",
                               param="name", code="voice_exists")  # fmt: skip
            if len(self._voices) >= self.max_voices:
                raise ApiError(409, f"This server holds its maximum of {self.max_voices} voices; delete one first.",
                               code="too_many_voices")  # fmt: skip

    def add(self, name: str, consent: str, ref_text: str | None, description: str | None, clip_wav: bytes,
            vector: np.ndarray) -> StoredVoice:  # fmt: skip
        stem = f"{name.lower()}-{int(time.time() * 1000)}"
        voice = StoredVoice(name, consent, ref_text, description, int(time.time()), f"{stem}.wav", f"{stem}.f32")
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / voice.clip).write_bytes(clip_wav)
        (self.folder / voice.vector).write_bytes(vector_bytes(vector))
        with self._lock:
            if name.lower() in self._voices:  # a concurrent upload of the same name won
                raise ApiError(409, f"A voice named {name!r} already exists.", param="name", code="voice_exists")
            self._voices[name.lower()] = voice
            self._save()
        return voice

    def delete(self, name: str) -> StoredVoice:
        with self._lock:
            voice = self._voices.pop(name.lower(), None)
            if voice is None:
                raise ApiError(404, f"There is no uploaded voice named {name!r}.", param="name", code="voice_not_found")
            self._save()
        for file in (voice.clip, voice.vector):
            (self.folder / file).unlink(missing_ok=True)
        return voice

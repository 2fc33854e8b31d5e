"""Voice identities and the Identity Lock.

An `Identity` fixes everything about a voice that must not change inside a track: the timbre (a vector at the
speaker position of a CustomVoice checkpoint: an x-vector from a Base checkpoint's speaker encoder, or a preset
speaker's embedding row), the seed, the language and a resting style. Emotion tags change only the instruction.
An in-context clone (ICL) also carries its reference clip's codes and transcript and renders on the Base checkpoint.

The drift guard compares the x-vector of rendered audio with the identity's `reference_vector` (cosine similarity,
the "lock score") and re-samples a segment that falls below `DriftGuard.threshold`.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

KINDS = ("preset", "designed", "cloned", "finetuned")


def vector_bytes(vector: np.ndarray) -> bytes:
    """A timbre vector as stored in the database: little-endian float32."""
    return np.ascontiguousarray(vector, dtype="<f4").reshape(-1).tobytes()


def vector_from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").copy()


def _as_vector(value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    array = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value, dtype=np.float64).reshape(-1)
    if array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError(f"a timbre vector must be non-empty and finite, got {array.size} values")
    return tuple(float(x) for x in array)


@dataclass(frozen=True)
class Identity:
    """A locked voice. `vector` None means the preset row of `speaker` in `model`."""

    name: str
    kind: str  # preset | designed | cloned | finetuned
    model: str  # the checkpoint that renders it (CustomVoice, or a fine-tuned one)
    speaker: str | None = None  # preset / fine-tuned speaker name in `model`
    vector: tuple[float, ...] | None = None  # (hidden,) timbre at the speaker position
    reference_vector: tuple[float, ...] | None = None  # (hidden,) x-vector for the drift guard; None = `vector`
    ref_clip: str | None = None  # path of the anchor (designed) or reference (cloned) clip
    transcript: str | None = None  # words of the reference clip (cloned)
    language: str = "auto"
    seed: int = 0
    base_style: str | None = None  # resting delivery, put before every emotion instruction
    description: str | None = None  # what a designed voice was designed from
    ref_codes: tuple[tuple[int, ...], ...] | None = None  # (frames, 16) reference clip codes: ICL on a Base `model`
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"identity kind must be one of {KINDS}, got {self.kind!r}")
        object.__setattr__(self, "vector", _as_vector(self.vector))
        object.__setattr__(self, "reference_vector", _as_vector(self.reference_vector))
        if self.vector is None and not self.speaker:
            raise ValueError(f"identity {self.name!r} needs a timbre: a speaker name or a vector")
        if self.ref_codes is not None:
            object.__setattr__(self, "ref_codes", tuple(tuple(int(c) for c in frame) for frame in self.ref_codes))
            if not self.transcript or self.vector is None:
                raise ValueError(f"identity {self.name!r}: in-context cloning needs the clip's transcript and x-vector")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")

    @property
    def guard_vector(self) -> tuple[float, ...] | None:
        """The x-vector the drift guard compares against (None: no guard for this identity)."""
        return self.reference_vector if self.reference_vector is not None else self.vector

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("vector", "reference_vector"):
            data[key] = None if data[key] is None else list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Identity:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown identity fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class VoiceLock:
    """A voice locked at creation: its identity and the clip its timbre came from."""

    identity: Identity
    clip: np.ndarray  # (n,) float32 mono
    sample_rate: int


@dataclass(frozen=True)
class DriftGuard:
    """Re-sample a segment whose lock score (cosine to the locked x-vector) is below `threshold`.

    The first `probe_seconds` (at least 0.5 s) of each attempt are held back and scored before any of it is played,
    so a rejected attempt is never heard and the stream always equals the master; the cost of a retry is one probe,
    not one segment. `max_retries` bounds the extra attempts (each with the seed offset by `SEED_STRIDE`); the last
    attempt is kept whatever its score (and a warning logged). The whole segment is scored again at its end: that is
    the lock score reported per segment. Identities without an x-vector (presets, fine-tuned speakers) are not
    guarded. The threshold is a starting point, not tuned on real weights: read the reported scores to set it.
    """

    threshold: float = 0.5
    max_retries: int = 2
    probe_seconds: float = 1.5
    enabled: bool = True

    def __post_init__(self) -> None:
        if not -1.0 <= self.threshold <= 1.01:
            raise ValueError(f"threshold must be a cosine in [-1, 1] (1.01 forces re-sampling), got {self.threshold}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.probe_seconds < 0:
            raise ValueError(f"probe_seconds must be >= 0, got {self.probe_seconds}")


def lock_score(vector: Sequence[float] | np.ndarray, reference: Sequence[float] | np.ndarray) -> float:
    """Cosine similarity of two x-vectors, in [-1, 1]; 0.0 when either is all zeros."""
    a = np.asarray(vector, dtype=np.float64).reshape(-1)
    b = np.asarray(reference, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"x-vectors differ in size: {a.shape[0]} vs {b.shape[0]}")
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norm == 0.0 or not math.isfinite(norm):
        return 0.0
    return float(np.dot(a, b) / norm)

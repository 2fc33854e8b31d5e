"""Smart ETA: predicted render time from the text and the measured speed of this model on this device.

Speed is kept as "compute seconds per estimated second of speech" (`script.estimate_seconds`), a moving average per
(model, device, load) persisted in a small JSON file (written atomically). The load is how many renders share the
engine's batched decode step (a bucket: 1, 2, 4, 8, ...): one render's speed depends on how many rows it shares each
step with, so a render predicted while the batch is full is predicted at that load. A load never measured borrows
the nearest measured one. During a render the prediction is refined as
frames arrive: the measured rate of this render is blended with the stored one, weighted by how much is done. With
nothing stored yet the first guess (real time) is only a placeholder, so this render's own speed takes over at once.
The rate measures generation only (the render's clock starts after its checkpoint is loaded).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from bot.narration.masters import write_json_atomic

log = logging.getLogger(__name__)

DEFAULT_RATE = 1.0  # first guess before anything was measured: real time
EMA_ALPHA = 0.3  # weight of the newest render in the stored average
PRIOR_WEIGHT_S = 2.0  # seconds of speech after which this render's measurement counts as much as the stored rate
GUESS_WEIGHT_S = 0.1  # the same for DEFAULT_RATE, a guess that measured nothing: outweighed by any measurement


def load_bucket(rows: float) -> int:
    """The power of two at or above `rows` (renders sharing the decode step): 1, 2, 4, 8, ..."""
    bucket = 1
    while bucket < rows:
        bucket *= 2
    return bucket


def _load_key(key: str, bucket: int) -> str:
    return key if bucket == 1 else f"{key}|x{bucket}"  # load 1 keeps the key of files written before load keying


class EtaStore:
    """{key: {"rate": float, "renders": int}} in a JSON file; tolerant of a missing or corrupt file."""

    def __init__(self, path: Path | None) -> None:
        self.path = None if path is None else Path(path)
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, float]] | None = None

    def _load(self) -> dict[str, dict[str, float]]:
        if self._data is None:
            self._data = {}
            if self.path is not None and self.path.is_file():
                try:
                    raw = json.loads(self.path.read_text(encoding="utf-8"))
                    self._data = {k: v for k, v in raw.items() if isinstance(v, dict) and v.get("rate", 0) > 0}
                except (OSError, ValueError, AttributeError) as exc:
                    log.warning("ignoring unreadable ETA file %s: %s", self.path, exc)
        return self._data

    def rate(self, key: str, load: float = 1) -> float | None:
        """The stored rate at `load` renders sharing the engine, else at the nearest load measured, else None."""
        wanted = load_bucket(load)
        with self._lock:
            data = self._load()
            measured = [b for b in _BUCKETS if _load_key(key, b) in data]
            if not measured:
                return None
            nearest = min(measured, key=lambda b: (abs(b.bit_length() - wanted.bit_length()), b))
            return float(data[_load_key(key, nearest)]["rate"])

    def update(self, key: str, measured_rate: float, load: float = 1) -> float:
        """Fold one render's rate (measured at `load` renders sharing the engine) into the moving average of that
        load, persist it, return the new average."""
        if not measured_rate > 0:
            raise ValueError(f"a measured rate must be > 0, got {measured_rate}")
        key = _load_key(key, load_bucket(load))
        with self._lock:
            data = self._load()
            old = data.get(key)
            rate = measured_rate if old is None else (1 - EMA_ALPHA) * old["rate"] + EMA_ALPHA * measured_rate
            data[key] = {"rate": rate, "renders": int(old["renders"] + 1 if old else 1)}
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(self.path, data)
            return rate


_BUCKETS = tuple(2**i for i in range(11))  # loads up to 1024 rows: beyond any batch an engine serves


def eta_key(describe: dict[str, object]) -> str:
    return f"{describe.get('custom_voice_model')}|{describe.get('device')}|{describe.get('dtype')}"


@dataclass
class RenderEta:
    """ETA of one render. Units are estimated seconds of speech; pauses cost nothing to compute."""

    total_units: float
    prior_rate: float | None

    def rate(self, done_units: float, elapsed_s: float) -> float:
        prior = self.prior_rate if self.prior_rate is not None else DEFAULT_RATE
        if done_units <= 0:
            return prior
        measured = elapsed_s / done_units
        prior_weight = PRIOR_WEIGHT_S if self.prior_rate is not None else GUESS_WEIGHT_S
        weight = done_units / (done_units + prior_weight)
        return (1 - weight) * prior + weight * measured

    def remaining_s(self, done_units: float, elapsed_s: float) -> float:
        return max(0.0, self.total_units - done_units) * self.rate(done_units, elapsed_s)

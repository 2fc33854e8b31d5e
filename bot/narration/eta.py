"""Smart ETA: predicted render time from the text and the measured speed of this model on this device.

Speed is kept as "compute seconds per estimated second of speech" (`script.estimate_seconds`), a moving average per
(model, device) persisted in a small JSON file (written atomically). During a render the prediction is refined as
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

    def rate(self, key: str) -> float | None:
        with self._lock:
            entry = self._load().get(key)
            return None if entry is None else float(entry["rate"])

    def update(self, key: str, measured_rate: float) -> float:
        """Fold one render's rate into the moving average, persist it, return the new average."""
        if not measured_rate > 0:
            raise ValueError(f"a measured rate must be > 0, got {measured_rate}")
        with self._lock:
            data = self._load()
            old = data.get(key)
            rate = measured_rate if old is None else (1 - EMA_ALPHA) * old["rate"] + EMA_ALPHA * measured_rate
            data[key] = {"rate": rate, "renders": int(old["renders"] + 1 if old else 1)}
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(self.path, data)
            return rate


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
